"""What happened during one tick, as arrays, and its conversion to the reference's event dicts.

``step`` returns an ``Events`` record: one group of equal-length arrays per event kind (agent
indices, and the intensity or quality where the kind has one), so counting is ``len(...)`` and no
Python object is built per event in the hot path. ``events_to_dicts`` turns a record into the
list-of-dict shape the original Townlet emitted (``{"event": "queue_conflict", ...}``), which the
rollout event counters read (spec ``reference-replay_rollout.md`` §9.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from townlet.world.state import BoolArray, FloatArray, IntArray

EVENT_NAMES: tuple[str, ...] = (
    "queue_conflict",
    "shared_meal",
    "chat_success",
    "chat_failure",
    "employment_helped_when_late",
    "employment_took_my_shift",
    "rivalry_avoid",
)


def _empty_int() -> IntArray:
    return np.zeros(0, dtype=np.int64)


def _empty_float() -> FloatArray:
    return np.zeros(0, dtype=np.float32)


@attrs.frozen(kw_only=True, eq=False)
class Events:
    """Events of one tick, by kind (arrays of equal length within a kind; agent indices).

    * ``queue_conflict``: ``conflict_actor`` asked for an object held by ``conflict_rival``,
      with ``conflict_intensity`` in [0.5, 1] (how badly the actor needed it).
    * ``shared_meal``: ``meal_agent`` started eating while ``meal_partner`` ate close by.
    * ``chat_success`` / ``chat_failure``: ``chat_speaker`` talked to ``chat_listener``;
      ``chat_ok`` tells which, ``chat_quality`` in [0, 1] (0 for failures).
    * ``employment_helped_when_late``: ``late_agent`` came late while ``late_helper`` worked nearby.
    * ``employment_took_my_shift``: ``shift_agent`` found its desk held by ``shift_taker``, who
      was not on shift.
    * ``rivalry_avoid``: ``avoid_agent`` yielded while its rival ``avoid_rival`` was close.
    * ``fainted`` (N,) marks agents whose need hit 0 this tick (they respawned).
    """

    tick: int
    conflict_actor: IntArray = attrs.field(factory=_empty_int)
    conflict_rival: IntArray = attrs.field(factory=_empty_int)
    conflict_intensity: FloatArray = attrs.field(factory=_empty_float)
    meal_agent: IntArray = attrs.field(factory=_empty_int)
    meal_partner: IntArray = attrs.field(factory=_empty_int)
    chat_speaker: IntArray = attrs.field(factory=_empty_int)
    chat_listener: IntArray = attrs.field(factory=_empty_int)
    chat_ok: BoolArray = attrs.field(factory=lambda: np.zeros(0, dtype=np.bool_))
    chat_quality: FloatArray = attrs.field(factory=_empty_float)
    late_agent: IntArray = attrs.field(factory=_empty_int)
    late_helper: IntArray = attrs.field(factory=_empty_int)
    shift_agent: IntArray = attrs.field(factory=_empty_int)
    shift_taker: IntArray = attrs.field(factory=_empty_int)
    avoid_agent: IntArray = attrs.field(factory=_empty_int)
    avoid_rival: IntArray = attrs.field(factory=_empty_int)
    fainted: BoolArray = attrs.field(factory=lambda: np.zeros(0, dtype=np.bool_))


def event_counts(events: Events) -> dict[str, float]:
    """Counts per event name plus ``queue_conflict_intensity_sum`` and ``chat_quality_sum``."""
    ok = events.chat_ok
    return {
        "queue_conflict": float(events.conflict_actor.size),
        "queue_conflict_intensity_sum": float(events.conflict_intensity.sum()),
        "shared_meal": float(events.meal_agent.size),
        "chat_success": float(ok.sum()),
        "chat_failure": float((~ok).sum()),
        "chat_quality_sum": float(events.chat_quality[ok].sum()),
        "employment_helped_when_late": float(events.late_agent.size),
        "employment_took_my_shift": float(events.shift_agent.size),
        "rivalry_avoid": float(events.avoid_agent.size),
        "fainted": float(events.fainted.sum()),
    }


def agent_names(count: int) -> tuple[str, ...]:
    """Default agent ids: ``agent_0`` … ``agent_{count-1}``."""
    return tuple(f"agent_{i}" for i in range(count))


def events_to_dicts(events: Events, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The reference's event shape: one dict per event with ``event`` and ``tick`` keys.

    ``queue_conflict`` carries ``actor``, ``rival``, ``intensity``; chats ``speaker``,
    ``listener`` and (success) ``quality``; ``shared_meal`` ``agents`` (a pair); employment events
    ``agent`` and ``other``; ``rivalry_avoid`` ``agent`` and ``rival``. ``names`` maps indices to
    agent ids (default ``agent_<i>``); raises ``IndexError`` if it is too short.
    """

    def nm(index: np.int64) -> str:
        return names[int(index)] if names is not None else f"agent_{int(index)}"

    tick = events.tick
    out: list[dict[str, Any]] = []
    for a, b, w in zip(
        events.conflict_actor, events.conflict_rival, events.conflict_intensity, strict=True
    ):
        out.append(
            {
                "event": "queue_conflict",
                "tick": tick,
                "actor": nm(a),
                "rival": nm(b),
                "intensity": float(w),
            }
        )
    for a, b in zip(events.meal_agent, events.meal_partner, strict=True):
        out.append({"event": "shared_meal", "tick": tick, "agents": [nm(a), nm(b)]})
    for a, b, ok, q in zip(
        events.chat_speaker, events.chat_listener, events.chat_ok, events.chat_quality, strict=True
    ):
        entry: dict[str, Any] = {"tick": tick, "speaker": nm(a), "listener": nm(b)}
        if ok:
            out.append({"event": "chat_success", **entry, "quality": float(q)})
        else:
            out.append({"event": "chat_failure", **entry})
    for kind, agents, others in (
        ("employment_helped_when_late", events.late_agent, events.late_helper),
        ("employment_took_my_shift", events.shift_agent, events.shift_taker),
    ):
        for a, b in zip(agents, others, strict=True):
            out.append({"event": kind, "tick": tick, "agent": nm(a), "other": nm(b)})
    for a, b in zip(events.avoid_agent, events.avoid_rival, strict=True):
        out.append({"event": "rivalry_avoid", "tick": tick, "agent": nm(a), "rival": nm(b)})
    return out
