"""``step(state, actions, rng) -> (state, rewards, dones, events)``: the public tick function.

Phases live in ``townlet.world.dynamics`` and ``townlet.world.work``; this module chains them,
computes rewards (the reference's ``RewardEngine`` terms) and handles fainting and respawn.

Reward per agent and tick, before clipping to ``±reward_clip``::

    survival_reward − Σ_need weight·(1 − need)² + wages + punctuality bonus − lateness penalty
      + [stage ≥ C1] chat_reward·quality per successful chat (speaker and listener)
      + [stage ≥ C2] avoid_conflict_reward per yield away from a rival

Chat rewards are withheld while any need deficit exceeds 0.85 (the reference's guardrail). An
agent that faints gets ``min(reward, 0) + faint_penalty`` (applied after clipping, so the
penalty is felt in full; the reference clipped it away).
"""

from __future__ import annotations

import attrs
import numpy as np

from townlet.world.dynamics import chat, check_actions, move_and_yield, progress, use_objects
from townlet.world.events import Events
from townlet.world.rivalry import decay_rivalry
from townlet.world.state import (
    CHAT,
    MOVE_NORTH,
    MOVE_WEST,
    USE,
    BoolArray,
    FloatArray,
    WorldState,
    spawn_needs,
    spawn_positions,
)
from townlet.world.work import advance_work

STAGE_LEVEL: dict[str, int] = {"OFF": 0, "C1": 1, "C2": 2, "C3": 3}
NEEDS_OVERRIDE_DEFICIT = 0.85


def _rewards(state: WorldState, parts: dict[str, np.ndarray]) -> FloatArray:
    """Per-agent reward of the tick, clipped, before the faint penalty."""
    cfg = state.config
    weights = np.array([cfg.hunger_weight, cfg.hygiene_weight, cfg.energy_weight], np.float32)
    deficit = 1.0 - state.needs
    reward = cfg.survival_reward - (weights * deficit**2).sum(axis=1)
    reward += parts["wages"] + parts["bonus"] - parts["penalty"]
    level = STAGE_LEVEL[cfg.social_reward_stage]
    if level >= 1 and parts["chat_speaker"].size:
        chat = np.zeros(state.needs.shape[0], dtype=np.float32)
        good = parts["chat_success"]
        pay = np.float32(cfg.chat_reward) * parts["chat_quality"][good]
        np.add.at(chat, parts["chat_speaker"][good], pay)
        np.add.at(chat, parts["chat_listener"][good], pay)
        calm = deficit.max(axis=1) <= NEEDS_OVERRIDE_DEFICIT
        reward += np.where(calm, chat, 0.0)
    if level >= 2:
        reward += np.float32(cfg.avoid_conflict_reward) * parts["avoided"]
    return np.asarray(np.clip(reward, -cfg.reward_clip, cfg.reward_clip), dtype=np.float32)


def _respawn(state: WorldState, fainted: BoolArray, rng: np.random.Generator) -> WorldState:
    """Fainted agents drop everything and start a new life: fresh tile, needs and counters."""
    idx = np.flatnonzero(fainted)
    if idx.size == 0:
        return attrs.evolve(state, reset_flag=np.zeros_like(state.reset_flag))
    cfg = state.config
    occupant = state.occupant.copy()
    occupant[state.using[idx][state.using[idx] >= 0]] = -1

    def put(arr: np.ndarray, value: object) -> np.ndarray:
        out = arr.copy()
        out[idx] = value
        return out

    return attrs.evolve(
        state,
        occupant=occupant,
        position=put(state.position, spawn_positions(rng, idx.size, cfg.size)),
        needs=put(state.needs, spawn_needs(rng, idx.size)),
        wallet=put(state.wallet, cfg.initial_wallet),
        using=put(state.using, -1),
        remaining=put(state.remaining, 0),
        queued=put(state.queued, -1),
        rival_ids=put(state.rival_ids, -1),
        rival_vals=put(state.rival_vals, 0.0),
        avoid_count=put(state.avoid_count, 0),
        arrived=put(state.arrived, -1),
        lateness_counter=put(state.lateness_counter, 0),
        shifts_done=put(state.shifts_done, 0),
        shifts_attended=put(state.shifts_attended, 0),
        wages_withheld=put(state.wages_withheld, 0.0),
        spawn_tick=put(state.spawn_tick, state.tick),
        reset_flag=fainted.copy(),
    )


def step(
    state: WorldState, actions: object, rng: np.random.Generator | None = None
) -> tuple[WorldState, FloatArray, BoolArray, Events]:
    """Advance the town one tick for all agents.

    ``actions``: (N,) integer action ids (see ``ACTION_NAMES``). ``rng``: a generator to draw
    from, or ``None`` to derive one from ``(state.seed, state.tick + 1)`` (the pure default).
    Returns the new state, rewards (N,) float32, dones (N,) bool — True where the agent fainted
    and respawned — and the tick's ``Events``. The inputs are not modified. Raises
    ``ValueError`` for actions of the wrong shape, dtype or range.
    """
    n = state.needs.shape[0]
    acts = check_actions(actions, n)
    gen = rng if rng is not None else np.random.default_rng([state.seed, state.tick + 1, 1])
    draws = gen.random((2, n), dtype=np.float32)
    ids, vals = decay_rivalry(state.rival_ids, state.rival_vals, state.config.rivalry_decay)
    st = attrs.evolve(state, tick=state.tick + 1, rival_ids=ids, rival_vals=vals)
    busy_before = st.using >= 0
    st, moved = move_and_yield(st, acts)
    st, used = use_objects(st, acts, draws[0])
    st, chats = chat(st, acts, draws[1])
    st, wages = progress(st)
    st, work = advance_work(st)
    parts = {**moved, **used, **chats, **work, "wages": wages}
    rewards = _rewards(st, parts)
    fainted = np.asarray((st.needs <= 0.0).any(axis=1), dtype=np.bool_)
    rewards = np.where(
        fainted, np.minimum(rewards, 0.0) + np.float32(st.config.faint_penalty), rewards
    ).astype(np.float32)
    success = np.where((acts >= MOVE_NORTH) & (acts <= MOVE_WEST), moved["move_ok"], True)
    success = np.where(acts == USE, used["won"] | busy_before, success)
    success = np.where(acts == CHAT, chats["chat_ok"], success)
    st = attrs.evolve(st, last_action=acts, last_success=success)
    st = _respawn(st, fainted, gen)
    events = Events(
        tick=st.tick,
        **{k: parts[k] for k in _EVENT_KEYS},
        chat_speaker=chats["chat_speaker"],
        chat_listener=chats["chat_listener"],
        chat_ok=chats["chat_success"],
        chat_quality=chats["chat_quality"],
        fainted=fainted,
    )
    return st, rewards, fainted, events


_EVENT_KEYS: tuple[str, ...] = (
    "conflict_actor",
    "conflict_rival",
    "conflict_intensity",
    "meal_agent",
    "meal_partner",
    "late_agent",
    "late_helper",
    "shift_agent",
    "shift_taker",
    "avoid_agent",
    "avoid_rival",
)


step_world = step  # the name exported from ``townlet``
