"""Work shifts: who is on shift, arrival (on time / late), absence, wages withheld, attendance.

Agent ``i`` works daily from tick-of-day ``shift_start[i]`` for ``shift_length`` ticks at any desk.
It *arrives* the first tick of the shift it holds a desk. Arriving within ``late_grace`` ticks of
the start is on time (``punctuality_bonus``); later is late (``lateness_counter`` += 1). Every
tick on shift without a desk after the grace period costs ``lateness_penalty``, which is also
added to ``wages_withheld``. Shift status one-hot order: pre, on_time, late, absent, post.
"""

from __future__ import annotations

import attrs
import numpy as np

from townlet.world.state import WORK, IntArray, WorldState

PRE, ON_TIME, LATE, ABSENT, POST = range(5)


def on_shift(state: WorldState, tick: int) -> IntArray:
    """(N,) bool as int: 1 while the tick of day lies inside the agent's shift."""
    tod = tick % state.config.day_length
    start = state.shift_start
    return ((tod >= start) & (tod < start + state.config.shift_length)).astype(np.int64)


def shift_status(state: WorldState) -> IntArray:
    """(N,) status code (PRE, ON_TIME, LATE, ABSENT, POST) at ``state.tick``.

    Before arriving, an agent is ON_TIME until the grace period ends, then LATE, then ABSENT
    once ``absent_after`` ticks have passed."""
    cfg = state.config
    tod = state.tick % cfg.day_length
    start = state.shift_start
    since = tod - start
    pending = np.where(
        since <= cfg.late_grace, ON_TIME, np.where(since <= cfg.absent_after, LATE, ABSENT)
    )
    came = np.where(state.arrived - start <= cfg.late_grace, ON_TIME, LATE)
    during = np.where(state.arrived >= 0, came, pending)
    return np.where(since < 0, PRE, np.where(since >= cfg.shift_length, POST, during))


def advance_work(state: WorldState) -> tuple[WorldState, dict[str, IntArray | np.ndarray]]:
    """Book arrivals, lateness and shift ends for the tick ``state.tick`` (needs ``using`` final).

    Returns the new state and ``bonus``/``penalty`` (N,) float32 reward parts plus the
    ``late_agent``/``late_helper`` event arrays (a late arrival while a nearby desk is worked)."""
    cfg, lay = state.config, state.layout
    tod = state.tick % cfg.day_length
    shift = on_shift(state, state.tick).astype(bool)
    held = np.maximum(state.using, 0)
    working = (state.using >= 0) & (lay.obj_category[held] == WORK) & shift
    arrive = working & (state.arrived < 0)
    late = arrive & (tod - state.shift_start > cfg.late_grace)
    arrived = np.where(arrive, tod, state.arrived)
    bonus = np.where(arrive & ~late, np.float32(cfg.punctuality_bonus), np.float32(0.0))
    missing = shift & ~working & (tod - state.shift_start > cfg.late_grace)
    penalty = np.where(missing, np.float32(cfg.lateness_penalty), np.float32(0.0))
    ended = tod == (state.shift_start + cfg.shift_length) % cfg.day_length
    late_ids = np.flatnonzero(late)
    near = lay.obj_near[state.using[late_ids]]
    helpers = np.where(near >= 0, state.occupant[np.maximum(near, 0)], -1)
    first = np.argmax(helpers >= 0, axis=1)
    helper = helpers[np.arange(late_ids.size), first] if late_ids.size else late_ids
    has_help = helper >= 0
    new = attrs.evolve(
        state,
        arrived=np.where(ended, -1, arrived),
        lateness_counter=state.lateness_counter + late,
        shifts_done=state.shifts_done + ended,
        shifts_attended=state.shifts_attended + (ended & (arrived >= 0)),
        wages_withheld=state.wages_withheld + penalty,
    )
    parts: dict[str, IntArray | np.ndarray] = {
        "bonus": bonus,
        "penalty": penalty,
        "late_agent": late_ids[has_help],
        "late_helper": helper[has_help],
    }
    return new, parts
