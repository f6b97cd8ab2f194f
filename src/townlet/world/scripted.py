"""A scripted policy that lives well in the town: the expert for behaviour cloning.

Rules, for every agent at once:

1. Holding an object: keep using it (``use``) until the use ends.
2. Waiting in a queue: yield if the holder is a rival and no need is critical; otherwise keep
   queueing politely (``use``).
3. Work comes first when the shift is on, or starts within the walk to the nearest desk plus
   ``WORK_LEAD`` ticks, unless a need is critical (< ``CRITICAL``).
4. Else the lowest need below ``HUNGRY`` picks the target: the nearest fridge/stove, shower or bed.
5. With a target: ``use`` it when in reach and free (or when standing on it, which queues),
   else step towards it along the longer axis.
6. Idle: chat with an adjacent non-rival with probability ``CHAT_PROB``, else wait.
"""

from __future__ import annotations

import numpy as np

from townlet.world.config import WorldConfig
from townlet.world.rivalry import rivalry_between
from townlet.world.state import (
    CHAT,
    MOVE_EAST,
    MOVE_NORTH,
    MOVE_SOUTH,
    MOVE_WEST,
    NUM_ACTIONS,
    USE,
    WAIT,
    WORK,
    YIELD,
    BoolArray,
    FloatArray,
    IntArray,
    WorldState,
    adjacent_partner,
    object_in_reach,
)

HUNGRY = 0.6
CRITICAL = 0.2
WORK_LEAD = 3
CHAT_PROB = 0.3


def _lowest_need(state: WorldState) -> FloatArray:
    """(N,) each agent's lowest need (column-wise: a reduction over 3 columns costs more)."""
    needs = state.needs
    return np.minimum(np.minimum(needs[:, 0], needs[:, 1]), needs[:, 2])


def _goal(state: WorldState, lowest: FloatArray) -> IntArray:
    """Category each agent heads for (hunger, hygiene, energy, work) or -1 when content."""
    cfg, lay = state.config, state.layout
    x, y = state.position[:, 0], state.position[:, 1]
    tod = (state.tick + 1) % cfg.day_length
    desk = lay.nearest[WORK, y, x]
    offset = lay.obj_pos[np.maximum(desk, 0)] - state.position
    walk = np.abs(offset[:, 0]) + np.abs(offset[:, 1])
    until = (state.shift_start - tod) % cfg.day_length
    during = (tod >= state.shift_start) & (tod < state.shift_start + cfg.shift_length - 1)
    work = (during | (until <= walk + WORK_LEAD)) & (lowest >= CRITICAL) & (desk >= 0)
    need = np.where(lowest < HUNGRY, np.argmin(state.needs, axis=1), -1)
    return np.where(work, WORK, need)


def _towards(state: WorldState, target: IntArray) -> IntArray:
    """Move action one step along the longer axis towards each target object."""
    diff = state.layout.obj_pos[np.maximum(target, 0)] - state.position
    horizontal = np.abs(diff[:, 0]) >= np.abs(diff[:, 1])
    step_x = np.where(diff[:, 0] > 0, MOVE_EAST, MOVE_WEST)
    step_y = np.where(diff[:, 1] > 0, MOVE_SOUTH, MOVE_NORTH)
    return np.where(horizontal, step_x, step_y)


def _chatty(state: WorldState, goal: IntArray) -> BoolArray:
    """Content agents with an adjacent partner they are not rivals with."""
    idle = np.flatnonzero(goal < 0)
    partner = adjacent_partner(state.position, state.config.size, idle)
    idle, partner = idle[partner >= 0], partner[partner >= 0]
    friendly = rivalry_between(state.rival_ids, state.rival_vals, idle, partner)
    chatty = np.zeros(goal.size, dtype=np.bool_)
    chatty[idle[friendly < state.config.rival_threshold]] = True
    return chatty


def _queue_actions(state: WorldState, lowest: FloatArray, act: IntArray) -> IntArray:
    """``act`` with queued agents set to yield (holder a rival, no need critical) or use."""
    queued = np.flatnonzero(state.queued >= 0)
    holder = state.occupant[state.queued[queued]]
    rivalry = rivalry_between(state.rival_ids, state.rival_vals, queued, holder)
    polite = (holder >= 0) & (rivalry >= state.config.rival_threshold)
    polite &= lowest[queued] >= CRITICAL
    act = act.copy()
    act[queued] = np.where(polite, YIELD, USE)
    return act


def scripted_actions(
    state: WorldState,
    config: WorldConfig | None = None,
    rng: np.random.Generator | None = None,
) -> IntArray:
    """Expert action ids (N,) for ``state`` (rules in the module docstring).

    ``config`` defaults to ``state.config`` (passing another raises ``ValueError``). ``rng``
    decides who chats when idle; ``None`` derives it from ``(state.seed, state.tick)`` so the
    policy is then a pure function of the state.
    """
    if config is not None and config is not state.config and config != state.config:
        raise ValueError("config: expected the config the state was reset with")
    lay = state.layout
    gen = rng if rng is not None else np.random.default_rng([state.seed, state.tick, 2])
    n = state.needs.shape[0]
    lowest = _lowest_need(state)
    goal = _goal(state, lowest)
    x, y = state.position[:, 0], state.position[:, 1]
    target = lay.nearest[np.maximum(goal, 0), y, x]
    reach = object_in_reach(state)
    here = (reach >= 0) & (lay.obj_category[np.maximum(reach, 0)] == goal)
    # Queue on the object's own tile: from there a free neighbour of the same kind is in reach.
    target_pos = lay.obj_pos[np.maximum(target, 0)]
    on_tile = (target_pos[:, 0] == x) & (target_pos[:, 1] == y)
    here &= on_tile | (state.occupant[np.maximum(reach, 0)] < 0)
    act = np.where(goal < 0, WAIT, np.where(here, USE, _towards(state, target)))
    act = np.where((goal >= 0) & (target < 0), WAIT, act)
    # Every agent draws (chatty or not), so the generator advances as it always has.
    act = np.where(_chatty(state, goal) & (gen.random(n) < CHAT_PROB), CHAT, act)
    act = _queue_actions(state, lowest, act)
    return np.where(state.using >= 0, USE, act).astype(np.int64)


def random_actions(state: WorldState, rng: np.random.Generator) -> IntArray:
    """Uniformly random action ids (N,): the baseline the scripted policy must beat."""
    return np.asarray(rng.integers(0, NUM_ACTIONS, size=state.needs.shape[0]), dtype=np.int64)
