"""``step``: one tick of the town for all agents at once.

Order within a tick: moves and yields (leaving objects and queues), object use (claims, queues
and queue conflicts), chats, affordance progress (needs restored, wages), need decay, work
bookkeeping, rewards, fainting and respawn. Every phase is a vectorised function of the state;
no Python loop runs over agents. Inputs are never modified: phases build new arrays and the new
state is assembled with ``attrs.evolve``.

Randomness: pass a ``numpy.random.Generator`` as ``rng``, or leave it ``None`` and the step draws
from ``default_rng([state.seed, state.tick + 1, 1])`` — then the step is a pure function of
(state, actions) and the trajectory is fixed by the reset seed and the actions alone.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from townlet.world.rivalry import add_rivalry, rivalry_between, strongest_rival
from townlet.world.state import (
    ACTION_DELTAS,
    CHAT,
    HUNGER,
    KIND_COST,
    KIND_DURATION,
    KIND_GAIN,
    MOVE_NORTH,
    MOVE_WEST,
    NUM_ACTIONS,
    USE,
    WORK,
    YIELD,
    BoolArray,
    FloatArray,
    IntArray,
    WorldState,
    adjacent_partner,
    object_in_reach,
)
from townlet.world.work import on_shift

Parts = dict[str, Any]


def check_actions(actions: object, count: int) -> IntArray:
    """``actions`` as an int64 (N,) array; ``ValueError`` on a wrong shape, dtype or id."""
    acts = np.asarray(actions)
    if acts.shape != (count,) or not np.issubdtype(acts.dtype, np.integer):
        raise ValueError(
            f"actions: expected an int array of shape ({count},), got {acts.dtype}{acts.shape}"
        )
    if count and (acts.min() < 0 or acts.max() >= NUM_ACTIONS):
        raise ValueError(
            f"actions: expected ids in [0, {NUM_ACTIONS - 1}], got {acts.min()}..{acts.max()}"
        )
    return acts.astype(np.int64)


def _release(state: WorldState, leave: BoolArray) -> dict[str, Any]:
    """Arrays after agents in ``leave`` drop what they hold and leave their queue."""
    occupant = state.occupant.copy()
    occupant[state.using[leave & (state.using >= 0)]] = -1
    return {
        "occupant": occupant,
        "using": np.where(leave, -1, state.using),
        "remaining": np.where(leave, 0, state.remaining),
        "queued": np.where(leave, -1, state.queued),
    }


def move_and_yield(state: WorldState, acts: IntArray) -> tuple[WorldState, Parts]:
    """Moves and yields. A yield near one's strongest rival (rivalry >= ``rival_threshold``,
    Chebyshev distance <= 2) also steps one tile away from it and counts as an avoidance."""
    cfg = state.config
    movers = (acts >= MOVE_NORTH) & (acts <= MOVE_WEST)
    yields = acts == YIELD
    avoid, rival, away = _avoidance(state, np.flatnonzero(yields))
    delta = ACTION_DELTAS[acts]
    delta[avoid] += away
    target = state.position + delta
    # One unsigned comparison per coordinate: a negative int64 viewed as uint64 is huge.
    inside_xy = target.view(np.uint64) < np.uint64(cfg.size)
    inside = inside_xy[:, 0] & inside_xy[:, 1]
    near = np.zeros(acts.size, dtype=np.bool_)
    near[avoid] = True
    new = attrs.evolve(
        state,
        position=np.where(inside[:, None], target, state.position),
        avoid_count=state.avoid_count + near,
        **_release(state, movers | yields),
    )
    return new, {
        "move_ok": ~(movers & ~inside),
        "avoided": near,
        "avoid_agent": avoid,
        "avoid_rival": rival,
    }


def _avoidance(state: WorldState, yielders: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Of the ``yielders``, those near their strongest rival; that rival; and the (dx, dy) step
    away from it (along the longer axis of their offset, east when it sits on the same tile)."""
    rival, strength = strongest_rival(state.rival_ids[yielders], state.rival_vals[yielders])
    diff = state.position[yielders] - state.position[np.maximum(rival, 0)]
    close = np.abs(diff).max(axis=1) <= 2
    near = (rival >= 0) & (strength >= state.config.rival_threshold) & close
    diff = diff[near]
    sign = np.sign(diff)
    along_x = np.abs(diff[:, 0]) >= np.abs(diff[:, 1])
    away = np.zeros_like(diff)
    away[:, 0] = np.where(along_x, np.where(sign[:, 0] == 0, 1, sign[:, 0]), 0)
    away[:, 1] = np.where(along_x, 0, sign[:, 1])
    return yielders[near], rival[near], away


def _urgency(state: WorldState, agents: IntArray, objects: IntArray) -> FloatArray:
    """How badly each agent needs the object: the need deficit, or 1 for a desk on shift."""
    cat = state.layout.obj_category[objects]
    need = state.needs[agents, np.minimum(cat, 2)]
    work = on_shift(state, state.tick)[agents].astype(np.float32)
    return np.where(cat == WORK, work, 1.0 - need).astype(np.float32)


def _claim(state: WorldState, cand: BoolArray, target: IntArray, draw: FloatArray) -> IntArray:
    """Winners among candidates for free objects: longest-queued first, ties by the draw."""
    idx = np.flatnonzero(cand & (state.occupant[np.maximum(target, 0)] < 0))
    since = np.where(state.queued[idx] == target[idx], state.queue_since[idx], state.tick)
    order = np.lexsort((draw[idx], since, target[idx]))
    _, first = np.unique(target[idx][order], return_index=True)
    return idx[order][first]


def use_objects(state: WorldState, acts: IntArray, draw: FloatArray) -> tuple[WorldState, Parts]:
    """Object use: free objects are claimed, occupied ones queued for (a new wait is a
    ``queue_conflict`` that raises rivalry both ways by ``rivalry_gain * intensity``)."""
    cfg, lay = state.config, state.layout
    wants = acts == USE
    target = object_in_reach(state)
    kind = lay.obj_kind[np.maximum(target, 0)]
    cost = KIND_COST[kind] * np.float32(cfg.meal_cost)
    cand = wants & (state.using < 0) & (target >= 0) & (state.wallet >= cost)
    won = _claim(state, cand, target, draw)
    occupant = state.occupant.copy()
    occupant[target[won]] = won
    wait = cand.copy()
    wait[won] = False
    fresh = wait & (state.queued != target)
    actor = np.flatnonzero(fresh)
    rival = occupant[target[actor]]
    intensity = 0.5 + 0.5 * _urgency(state, actor, target[actor])
    inc = np.float32(cfg.rivalry_gain) * intensity
    ids, vals = add_rivalry(
        state.rival_ids,
        state.rival_vals,
        np.concatenate([actor, rival]),
        np.concatenate([rival, actor]),
        np.concatenate([inc, inc]),
    )
    wallet = state.wallet.copy()
    wallet[won] -= cost[won]
    using, remaining = state.using.copy(), state.remaining.copy()
    using[won] = target[won]
    remaining[won] = KIND_DURATION[kind[won]]
    shift = on_shift(state, state.tick).astype(bool)
    desk = lay.obj_category[target[actor]] == WORK
    took = desk & shift[actor] & ~shift[rival]
    new = attrs.evolve(
        state,
        occupant=occupant,
        using=using,
        remaining=remaining,
        wallet=wallet,
        queued=np.where(wait, target, -1),
        rival_ids=ids,
        rival_vals=vals,
        queue_since=np.where(fresh, state.tick, state.queue_since),
    )
    won_mask = np.zeros(acts.size, dtype=np.bool_)
    won_mask[won] = True
    parts: Parts = {
        "won": won_mask,
        "conflict_actor": actor,
        "conflict_rival": rival,
        "conflict_intensity": intensity,
        "shift_agent": actor[took],
        "shift_taker": rival[took],
        **_shared_meals(new, won),
    }
    return new, parts


def _shared_meals(state: WorldState, starters: IntArray) -> dict[str, IntArray]:
    """Agents that started eating next to someone already eating (a ``shared_meal``)."""
    lay = state.layout
    eaters = starters[lay.obj_category[state.using[starters]] == HUNGER]
    near = lay.obj_near[state.using[eaters]]
    mates = np.where(near >= 0, state.occupant[np.maximum(near, 0)], -1)
    first = np.argmax(mates >= 0, axis=1)
    partner = mates[np.arange(eaters.size), first] if eaters.size else eaters
    return {"meal_agent": eaters[partner >= 0], "meal_partner": partner[partner >= 0]}


def chat(state: WorldState, acts: IntArray, draw: FloatArray) -> tuple[WorldState, Parts]:
    """Chats with an adjacent agent. Success has probability ``chat_success_rate`` × (1 − the
    pair's rivalry); quality grows with both agents' needs. Success eases rivalry by 0.05 both
    ways, failure raises it by 0.05."""
    cfg = state.config
    speak = np.flatnonzero(acts == CHAT)
    partner = adjacent_partner(state.position, cfg.size, speak)
    speak, partner = speak[partner >= 0], partner[partner >= 0]
    riv = np.maximum(
        rivalry_between(state.rival_ids, state.rival_vals, speak, partner),
        rivalry_between(state.rival_ids, state.rival_vals, partner, speak),
    )
    ok = draw[speak] < np.float32(cfg.chat_success_rate) * (1.0 - riv)
    mood = 0.5 + 0.25 * (state.needs[speak].mean(axis=1) + state.needs[partner].mean(axis=1))
    quality = np.where(ok, np.clip((1.0 - riv) * mood, 0.0, 1.0), 0.0).astype(np.float32)
    inc = np.where(ok, np.float32(-0.05), np.float32(0.05))
    ids, vals = add_rivalry(
        state.rival_ids,
        state.rival_vals,
        np.concatenate([speak, partner]),
        np.concatenate([partner, speak]),
        np.concatenate([inc, inc]),
    )
    chat_ok = np.zeros(acts.size, dtype=np.bool_)
    chat_ok[speak[ok]] = True
    parts: Parts = {
        "chat_ok": chat_ok,
        "chat_speaker": speak,
        "chat_listener": partner,
        "chat_success": ok,
        "chat_quality": quality,
    }
    return attrs.evolve(state, rival_ids=ids, rival_vals=vals), parts


def progress(state: WorldState) -> tuple[WorldState, FloatArray]:
    """Held objects act for one tick: needs restored, wages paid on shift; finished uses end.
    Then needs decay and are clipped to [0, 1]. Returns the wages paid (N,)."""
    cfg, lay = state.config, state.layout
    active = state.using >= 0
    held = np.maximum(state.using, 0)
    kind, cat = lay.obj_kind[held], lay.obj_category[held]
    gain = np.zeros_like(state.needs)
    feeds = np.flatnonzero(active & (cat < WORK))
    gain[feeds, cat[feeds]] = KIND_GAIN[kind[feeds]]
    decay = np.array([cfg.hunger_decay, cfg.hygiene_decay, cfg.energy_decay], dtype=np.float32)
    needs = np.clip(state.needs + gain - decay, 0.0, 1.0).astype(np.float32)
    shift = on_shift(state, state.tick).astype(bool)
    wages = np.where(active & (cat == WORK) & shift, np.float32(cfg.wage_rate), np.float32(0.0))
    remaining = state.remaining - active
    done = active & (remaining <= 0)
    occupant = state.occupant.copy()
    occupant[state.using[done]] = -1
    new = attrs.evolve(
        state,
        needs=needs,
        wallet=state.wallet + wages,
        remaining=np.maximum(remaining, 0),
        using=np.where(done, -1, state.using),
        occupant=occupant,
    )
    return new, wages.astype(np.float32)
