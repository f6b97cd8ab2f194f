"""The promotion decision over an anneal summary: PROMOTE, HOLD or FAIL, with reasons.

The reference's ``scripts/promotion_evaluate.py`` (spec §8), as a pure function. Two input shapes:

* **full** — the summary has a list of stage results (``results``, or ``stages`` as in an
  ``AnnealSummary`` dump). ``status`` is the summary's, else the §4.4 reduction of the stages;
  readiness is ``promotion.candidate_ready`` (else ``promotion_candidate_ready``, else False).
  ``pass`` + ready → PROMOTE; ``pass`` not ready → HOLD with ``candidate_not_ready``;
  ``hold`` → HOLD; anything else → FAIL.
* **simple** — no stage list; ``bc_accuracy`` and ``bc_threshold`` are required and one BC stage
  is synthesised from them. ``pass`` → PROMOTE, else HOLD (simple mode never FAILs).

Reasons, in stage order: ``bc_stage_failed_cycle_{c}`` for a failed BC stage, and
``loss_flag_cycle_{c}`` / ``queue_flag_cycle_{c}`` / ``intensity_flag_cycle_{c}`` for each flag
raised on a PPO stage. ``{c}`` is Python's ``str()`` of the stored cycle, as in the reference, so
a float cycle reads ``1.0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
from attrs import validators as v

from townlet.errors import PromotionError
from townlet.policy.training.services.promotion import frozen_mapping, to_plain
from townlet.policy.training.strategies.anneal.flags import (
    anneal_status,
    bc_stage_passed,
    stage_flags,
)

Decision = Literal["PROMOTE", "HOLD", "FAIL"]


def _to_reasons(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(values)


def _to_results(values: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    return tuple(frozen_mapping(stage) for stage in values)


DECISION_EXIT_CODES: Mapping[str, int] = {"PROMOTE": 0, "HOLD": 1, "FAIL": 2}


@attrs.frozen(kw_only=True)
class PromotionDecision:
    """A promotion decision with its inputs. ``status`` is lowercase, as the reference prints it."""

    decision: Decision = attrs.field(validator=v.in_(("PROMOTE", "HOLD", "FAIL")))
    status: str = attrs.field(validator=v.instance_of(str))
    candidate_ready: bool = attrs.field(validator=v.instance_of(bool))
    reasons: tuple[str, ...] = attrs.field(converter=_to_reasons)
    promotion: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    results: tuple[Mapping[str, Any], ...] = attrs.field(default=(), converter=_to_results)

    @property
    def exit_code(self) -> int:
        """0 for PROMOTE, 1 for HOLD, 2 for FAIL."""
        return DECISION_EXIT_CODES[self.decision]

    def to_dict(self) -> dict[str, Any]:
        """The reference's output object: status, decision, candidate_ready, promotion, …"""
        return {
            "status": self.status,
            "decision": self.decision,
            "candidate_ready": self.candidate_ready,
            "promotion": to_plain(self.promotion),
            "results": [to_plain(stage) for stage in self.results],
            "reasons": list(self.reasons),
        }


def decision_reasons(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The reasons a list of stage results gives, in stage order (see the module docstring)."""
    reasons: list[str] = []
    for stage in stages:
        mode, cycle = stage.get("mode"), stage.get("cycle")
        if mode == "bc" and not bc_stage_passed(stage):
            reasons.append(f"bc_stage_failed_cycle_{cycle}")
        elif mode == "ppo":
            flags = stage_flags(stage)
            for name, raised in (
                ("loss", flags.loss_flag),
                ("queue", flags.queue_flag),
                ("intensity", flags.intensity_flag),
            ):
                if raised:
                    reasons.append(f"{name}_flag_cycle_{cycle}")
    return reasons


def _stage_list(summary: Mapping[str, Any], source: str) -> list[Mapping[str, Any]] | None:
    key = "results" if "results" in summary else "stages"
    stages = summary.get(key)
    if not isinstance(stages, list):
        return None
    for index, stage in enumerate(stages):
        if not isinstance(stage, Mapping):
            raise PromotionError(f"{source}: field '{key}[{index}]': expected an object")
    return stages


def _status(summary: Mapping[str, Any], derived: str) -> str:
    status = summary.get("status")
    return (str(status) if status else derived).lower()


def _full_decision(
    summary: Mapping[str, Any], stages: list[Mapping[str, Any]]
) -> PromotionDecision:
    promotion = summary.get("promotion")
    promotion = promotion if isinstance(promotion, Mapping) else {}
    ready_raw = promotion.get("candidate_ready", summary.get("promotion_candidate_ready"))
    ready = bool(ready_raw)
    status = _status(summary, anneal_status(stages))
    reasons = decision_reasons(stages)
    decision: Decision
    if status == "pass":
        decision = "PROMOTE" if ready else "HOLD"
        if not ready:
            reasons.append("candidate_not_ready")
    else:
        decision = "HOLD" if status == "hold" else "FAIL"
    return PromotionDecision(
        decision=decision,
        status=status,
        candidate_ready=ready,
        reasons=reasons,
        promotion=promotion,
        results=stages,
    )


def _number(summary: Mapping[str, Any], key: str, source: str) -> float:
    value = summary.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PromotionError(
            f"{source}: field '{key}': expected a number (a summary without a 'results' list "
            f"needs bc_accuracy and bc_threshold), got {value!r}"
        )
    return float(value)


def _simple_decision(summary: Mapping[str, Any], source: str) -> PromotionDecision:
    accuracy = _number(summary, "bc_accuracy", source)
    threshold = _number(summary, "bc_threshold", source)
    passed = bool(summary.get("bc_passed", accuracy >= threshold))
    stage: dict[str, Any] = {
        "mode": "bc",
        "cycle": summary.get("cycle", 0),
        "passed": passed,
        "accuracy": accuracy,
        "threshold": threshold,
    }
    status = _status(summary, "pass" if passed else "fail")
    promotion = summary.get("promotion")
    return PromotionDecision(
        decision="PROMOTE" if status == "pass" else "HOLD",
        status=status,
        candidate_ready=bool(summary.get("candidate_ready", passed)),
        reasons=decision_reasons([stage]),
        promotion=promotion if isinstance(promotion, Mapping) else {},
        results=[stage],
    )


def decide(summary: Mapping[str, Any], *, source: str = "summary") -> PromotionDecision:
    """Decide PROMOTE / HOLD / FAIL for an anneal summary (see the module docstring).

    ``source`` names the input in error messages (a file path, or ``stdin``).

    Raises:
        PromotionError: a stage entry is not an object, or a simple-mode summary lacks a numeric
            ``bc_accuracy`` or ``bc_threshold``.
    """
    stages = _stage_list(summary, source)
    if stages is not None:
        return _full_decision(summary, stages)
    return _simple_decision(summary, source)
