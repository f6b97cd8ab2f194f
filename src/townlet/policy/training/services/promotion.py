"""Promotion bookkeeping: a frozen state record and pure transitions over it.

The state machine follows the reference's ``PromotionManager`` (spec §6)::

    monitoring --(pass streak >= required_passes)--> ready --promote--> promoted
        ^                                               |                  |
        +------------(HOLD / FAIL resets streak)--------+                  |
        +-----------------------------(rollback, swap)---------------------+

* :func:`record_evaluation` folds one anneal status into the state: ``PASS`` adds one to the
  pass streak, ``HOLD`` and ``FAIL`` reset it (``last_result = "fail"``); the candidate is ready
  when the streak reaches ``required_passes``. ``promoted`` is sticky under evaluations.
* :func:`promote`, :func:`rollback` and :func:`swap` change the current release and append a
  history event; the history keeps the latest :data:`HISTORY_LIMIT` events.

Releases, the candidate and event metadata are JSON-like mappings stored as read-only copies.
Every function returns a new state and leaves its input unchanged. Files live in
:mod:`townlet.policy.training.services.promotion_io`.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs
from attrs import validators as v

from townlet.errors import PromotionError
from townlet.policy.training.services.behaviour_gate import BehaviourGateResult
from townlet.policy.training.strategies.anneal.flags import read_field

PromotionPhase = Literal["monitoring", "ready", "promoted"]
PromotionEventKind = Literal["promoted", "rollback", "policy_swap", "behaviour_gate"]
PROMOTION_PHASES: tuple[str, ...] = ("monitoring", "ready", "promoted")
PROMOTION_EVENTS: tuple[str, ...] = ("promoted", "rollback", "policy_swap", "behaviour_gate")
HISTORY_LIMIT = 50
_RELEASE_EVENTS = ("promoted", "rollback", "policy_swap")


def frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only deep copy of ``value`` with string keys (records hold these, never dicts)."""
    return types.MappingProxyType({str(k): copy.deepcopy(item) for k, item in value.items()})


def to_plain(value: Any) -> Any:
    """``value`` with every mapping turned into a dict and every tuple into a list (for JSON)."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(item) for k, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    return value


def _optional_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else frozen_mapping(value)


def _optional_int(value: int | None) -> int | None:
    return None if value is None else int(value)


@attrs.frozen(kw_only=True)
class PromotionEvent:
    """One entry of the promotion history.

    ``event`` is ``promoted``, ``rollback`` or ``policy_swap`` (release changes, with the
    release before and after) or ``behaviour_gate`` (a recorded gate result in ``metadata``).
    ``tick`` is the evaluation counter (or simulation tick) when it happened; ``timestamp`` is an
    optional ISO-8601 string the caller supplies (the transitions never read a clock).
    """

    event: PromotionEventKind = attrs.field(validator=v.in_(PROMOTION_EVENTS))
    tick: int | None = attrs.field(default=None, converter=_optional_int)
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    previous_release: Mapping[str, Any] | None = attrs.field(
        default=None, converter=_optional_mapping
    )
    release: Mapping[str, Any] | None = attrs.field(default=None, converter=_optional_mapping)
    timestamp: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))


def _to_history(events: Iterable[PromotionEvent]) -> tuple[PromotionEvent, ...]:
    return tuple(events)


def _check_history(_: Any, __: Any, value: tuple[PromotionEvent, ...]) -> None:
    if len(value) > HISTORY_LIMIT:
        raise PromotionError(f"history: at most {HISTORY_LIMIT} events, got {len(value)}")


@attrs.frozen(kw_only=True)
class PromotionState:
    """Where a candidate policy stands on its way to promotion, and the release history.

    ``evaluations`` counts recorded anneal evaluations; it is the pseudo-tick of
    ``last_evaluated_tick`` and the default tick of history events. Releases are mappings such as
    ``{"config_id": ..., "policy_hash": ..., "checkpoint": ...}`` (``None`` values dropped).
    """

    state: PromotionPhase = attrs.field(default="monitoring", validator=v.in_(PROMOTION_PHASES))
    pass_streak: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    required_passes: int = attrs.field(default=2, validator=[v.instance_of(int), v.ge(1), v.le(10)])
    candidate_ready: bool = attrs.field(default=False, validator=v.instance_of(bool))
    candidate_ready_tick: int | None = attrs.field(default=None, converter=_optional_int)
    last_result: Literal["pass", "fail"] | None = attrs.field(
        default=None, validator=v.optional(v.in_(("pass", "fail")))
    )
    last_evaluated_tick: int | None = attrs.field(default=None, converter=_optional_int)
    evaluations: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    initial_release: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    current_release: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    candidate: Mapping[str, Any] | None = attrs.field(default=None, converter=_optional_mapping)
    history: tuple[PromotionEvent, ...] = attrs.field(
        default=(), converter=_to_history, validator=_check_history
    )


def normalize_release(metadata: Mapping[str, Any] | None, *, config_id: Any) -> dict[str, Any]:
    """The reference's release normalisation: ``{"config_id": config_id, **metadata}``.

    Keys are stringified and ``None`` values dropped (so a ``None`` config id is left out).
    """
    release: dict[str, Any] = {"config_id": config_id}
    release.update({str(k): item for k, item in (metadata or {}).items() if item is not None})
    return {k: item for k, item in release.items() if item is not None}


def init_promotion_state(
    *, required_passes: int = 2, config_id: str | None = None, policy_hash: str | None = None
) -> PromotionState:
    """A fresh state: monitoring, no streak, the initial release as the current release."""
    initial = normalize_release({"policy_hash": policy_hash}, config_id=config_id)
    return PromotionState(
        required_passes=required_passes, initial_release=initial, current_release=initial
    )


def _append(history: Iterable[PromotionEvent], event: PromotionEvent) -> tuple[PromotionEvent, ...]:
    # FIFO: the oldest events fall off, as in the reference's bounded deque.
    return (*history, event)[-HISTORY_LIMIT:]


def apply_readiness(
    state: PromotionState, *, candidate_ready: bool, tick: int | None
) -> PromotionState:
    """Move between ``monitoring`` and ``ready`` (``promoted`` is sticky).

    Becoming ready records ``tick`` as ``candidate_ready_tick`` (an already-ready state keeps its
    original tick); losing readiness returns ``ready`` to ``monitoring``.
    """
    phase, ready_tick = state.state, state.candidate_ready_tick
    if candidate_ready and phase == "monitoring":
        phase, ready_tick = "ready", tick
    elif not candidate_ready and phase == "ready":
        phase, ready_tick = "monitoring", None
    return attrs.evolve(
        state, state=phase, candidate_ready_tick=ready_tick, candidate_ready=candidate_ready
    )


def update_from_metrics(
    state: PromotionState, block: Mapping[str, Any], *, tick: int | None
) -> PromotionState:
    """Mirror a promotion metrics block (``pass_streak``, ``last_result``, ``candidate_ready``…).

    The reference's ``update_from_metrics``: the streak, last result and last evaluated tick are
    copied from the block, ``required_passes`` in the block is ignored, and readiness moves the
    state as :func:`apply_readiness`.

    Raises ``PromotionError`` for a ``last_result`` other than 'pass', 'fail' or None.
    """
    last = block.get("last_result")
    if last not in (None, "pass", "fail"):
        raise PromotionError(f"last_result: expected 'pass', 'fail' or null, got {last!r}")
    last_tick = block.get("last_evaluated_tick")
    state = attrs.evolve(
        state,
        pass_streak=int(block.get("pass_streak") or 0),
        last_result=last,
        last_evaluated_tick=None if last_tick is None else int(last_tick),
    )
    return apply_readiness(state, candidate_ready=bool(block.get("candidate_ready")), tick=tick)


def record_evaluation(
    state: PromotionState,
    status: str,
    results: Iterable[Any] = (),
    *,
    required_passes: int | None = None,
    candidate: Mapping[str, Any] | None = None,
) -> PromotionState:
    """Fold one anneal evaluation (``PASS``/``HOLD``/``FAIL``) into the promotion state.

    The evaluation counter is the tick. ``PASS`` extends the streak and sets the candidate to
    ``{"status": "PASS", "cycle", "mode"}`` of the last stage result (``None`` values when there
    are no results) overlaid with ``candidate`` (e.g. ``checkpoint``, ``policy_hash``); ``HOLD``
    and ``FAIL`` reset the streak and clear the candidate. ``required_passes``, when given,
    replaces the state's (the config is the source of truth).

    Raises:
        PromotionError: ``status`` is not PASS, HOLD or FAIL (any case).
    """
    verdict = str(status).upper()
    if verdict not in ("PASS", "HOLD", "FAIL"):
        raise PromotionError(f"status: expected PASS, HOLD or FAIL, got {status!r}")
    required = state.required_passes if required_passes is None else required_passes
    tick = state.evaluations + 1
    passed = verdict == "PASS"
    streak = state.pass_streak + 1 if passed else 0
    new_candidate: dict[str, Any] | None = None
    if passed:
        stages = list(results)
        last = stages[-1] if stages else None
        new_candidate = {
            "status": "PASS",
            "cycle": read_field(last, "cycle"),
            "mode": read_field(last, "mode"),
            **(candidate or {}),
        }
    state = attrs.evolve(
        state,
        evaluations=tick,
        pass_streak=streak,
        required_passes=required,
        last_result="pass" if passed else "fail",
        last_evaluated_tick=tick,
        candidate=new_candidate,
    )
    return apply_readiness(state, candidate_ready=streak >= required, tick=tick)


def evaluation_summary(state: PromotionState) -> dict[str, Any]:
    """The promotion block of one evaluation (the reference adapter's return value)."""
    return {
        "pass_streak": state.pass_streak,
        "required_passes": state.required_passes,
        "candidate_ready": state.candidate_ready,
        "last_result": state.last_result,
        "last_evaluated_tick": state.last_evaluated_tick,
    }


def set_candidate(state: PromotionState, metadata: Mapping[str, Any] | None) -> PromotionState:
    """Replace the candidate metadata (``None`` clears it)."""
    return attrs.evolve(state, candidate=metadata)


def _event_tick(state: PromotionState, tick: int | None) -> int:
    return state.evaluations if tick is None else tick


def _config_id(state: PromotionState) -> Any:
    return state.initial_release.get("config_id")


def latest_behaviour_gate(state: PromotionState) -> Mapping[str, Any] | None:
    """The newest behaviour-gate result recorded since the last release change, or ``None``."""
    for event in reversed(state.history):
        if event.event in _RELEASE_EVENTS:
            return None
        if event.event == "behaviour_gate":
            return event.metadata
    return None


def record_behaviour_gate(
    state: PromotionState,
    result: BehaviourGateResult,
    *,
    tick: int | None = None,
    timestamp: str | None = None,
) -> PromotionState:
    """Append a ``behaviour_gate`` event holding ``result`` (DESIGN §5.7) to the history."""
    event = PromotionEvent(
        event="behaviour_gate",
        tick=_event_tick(state, tick),
        metadata=result.to_dict(),
        timestamp=timestamp,
    )
    return attrs.evolve(state, history=_append(state.history, event))


def _check_promotable(
    state: PromotionState, metadata: Mapping[str, Any], *, require_ready: bool, require_gate: bool
) -> None:
    if require_ready and not state.candidate_ready:
        raise PromotionError(
            f"promotion_not_ready: the candidate has {state.pass_streak} of "
            f"{state.required_passes} required passes"
        )
    if metadata.get("checkpoint") is None:
        raise PromotionError("checkpoint: a promotion needs the candidate's checkpoint path")
    if require_gate:
        gate = latest_behaviour_gate(state)
        if gate is None or not gate.get("passed"):
            raise PromotionError(
                "behaviour_gate: no passing behaviour gate recorded for this candidate"
            )


def promote(
    state: PromotionState,
    metadata: Mapping[str, Any] | None = None,
    *,
    tick: int | None = None,
    timestamp: str | None = None,
    require_ready: bool = True,
    require_behaviour_gate: bool = False,
) -> PromotionState:
    """Promote the candidate: its release becomes the current release.

    The release is ``normalize_release(candidate | metadata)`` — the candidate metadata overlaid
    with ``metadata`` (``checkpoint``, ``policy_hash``, …), which also becomes the candidate. The
    state turns ``promoted``, the streak and readiness reset, and a ``promoted`` event records
    the previous and the new release. ``tick`` defaults to the evaluation counter.

    Raises:
        PromotionError: ``require_ready`` and the candidate is not ready (message starts with
            ``promotion_not_ready``); no ``checkpoint`` in the metadata; or
            ``require_behaviour_gate`` and no passing gate was recorded since the last release.
    """
    merged = {**(state.candidate or {}), **(metadata or {})}
    _check_promotable(
        state, merged, require_ready=require_ready, require_gate=require_behaviour_gate
    )
    return _change_release(
        state,
        "promoted",
        metadata=merged,
        release=normalize_release(merged, config_id=_config_id(state)),
        phase="promoted",
        candidate=merged,
        tick=tick,
        timestamp=timestamp,
    )


def _rollback_target(state: PromotionState) -> Mapping[str, Any]:
    # The release before the latest promotion still in the (bounded) history, else the initial.
    for event in reversed(state.history):
        if event.event == "promoted" and event.previous_release is not None:
            return event.previous_release
    return state.initial_release


def rollback(
    state: PromotionState,
    metadata: Mapping[str, Any] | None = None,
    *,
    tick: int | None = None,
    timestamp: str | None = None,
) -> PromotionState:
    """Return to the release that preceded the latest promotion (the initial one if none).

    Non-``None`` ``metadata`` items (``reason``, ``checkpoint``) are overlaid on that release.
    Repeated rollbacks resolve against the same latest promotion. The state returns to
    ``monitoring`` with no streak and no candidate.
    """
    target = {**_rollback_target(state)}
    target.update({str(k): item for k, item in (metadata or {}).items() if item is not None})
    config_id = _config_id(state)
    if config_id is not None:
        target.setdefault("config_id", config_id)
    return _change_release(
        state, "rollback", metadata=metadata or {}, release=target, tick=tick, timestamp=timestamp
    )


def swap(
    state: PromotionState,
    metadata: Mapping[str, Any],
    *,
    tick: int | None = None,
    timestamp: str | None = None,
) -> PromotionState:
    """Record a manual policy swap: ``normalize_release(metadata)`` becomes current.

    The state returns to ``monitoring`` with no streak and no candidate.
    """
    release = normalize_release(metadata, config_id=_config_id(state))
    return _change_release(
        state, "policy_swap", metadata=metadata, release=release, tick=tick, timestamp=timestamp
    )


def _change_release(
    state: PromotionState,
    kind: PromotionEventKind,
    *,
    metadata: Mapping[str, Any],
    release: Mapping[str, Any],
    phase: PromotionPhase = "monitoring",
    candidate: Mapping[str, Any] | None = None,
    tick: int | None,
    timestamp: str | None,
) -> PromotionState:
    # Every release change (promotion, rollback, swap) records the old and the new release and
    # clears the streak and readiness; only the phase and the candidate differ.
    event = PromotionEvent(
        event=kind,
        tick=_event_tick(state, tick),
        metadata=metadata,
        previous_release=state.current_release,
        release=release,
        timestamp=timestamp,
    )
    return attrs.evolve(
        state,
        state=phase,
        candidate_ready=False,
        candidate_ready_tick=None,
        pass_streak=0,
        candidate=candidate,
        current_release=release,
        history=_append(state.history, event),
    )
