"""Anneal guardrails: the flag arithmetic, the baselines it compares against, the status reduction.

Pure and torch-free. The arithmetic is the reference's (``spec/reference-bc_anneal_promotion.md``
§4.3–§4.4) to the last comparison:

* loss flag — ``Lb`` is a number, ``Lb != 0`` and ``|L − Lb| / |Lb| > tol_loss``
  (two-sided, strict);
* queue flag — ``Qb`` is a number, ``Qb != 0`` and ``Q < (1 − tol_queue) · Qb``
  (only a drop, strict);
* intensity flag — the same as the queue flag over the conflict-intensity sum.

A missing (``None``) or zero baseline never flags, so the first PPO stage of a run cannot flag.
Plain IEEE doubles are used throughout, so ``L = 1.10`` against ``Lb = 1.0`` *does* flag
(``1.10 − 1.0`` is slightly above ``0.1``), exactly as in the reference.

Stage results are read through :func:`read_field`, which accepts a mapping (a line of
``anneal_results.json``) or any object with attributes (an ``AnnealStageResult`` record).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs
from attrs import validators as v

from townlet.errors import ConfigError

AnnealStatus = Literal["PASS", "HOLD", "FAIL"]

# (flag name on a stage result, short name) — the reference's result keys come first; the
# short names are accepted too so that hand-built records read naturally.
_FLAG_FIELDS: tuple[tuple[str, str], ...] = (
    ("anneal_loss_flag", "loss_flag"),
    ("anneal_queue_flag", "queue_flag"),
    ("anneal_intensity_flag", "intensity_flag"),
)
_MISSING = object()


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


@attrs.frozen(kw_only=True)
class AnnealBaselines:
    """The previous PPO stage's final-epoch values that the next PPO stage is compared against.

    ``None`` means "no baseline yet" (no PPO stage has run); such a baseline never flags.
    ``queue_conflict_events`` and ``queue_conflict_intensity_sum`` are the social counters of the
    stage's final epoch (DESIGN §5.4), not dataset-level constants.
    """

    loss_total: float | None = attrs.field(default=None, converter=_optional_float)
    queue_conflict_events: float | None = attrs.field(default=None, converter=_optional_float)
    queue_conflict_intensity_sum: float | None = attrs.field(
        default=None, converter=_optional_float
    )


@attrs.frozen(kw_only=True)
class AnnealFlags:
    """The three guardrail flags of one PPO epoch."""

    loss_flag: bool = attrs.field(validator=v.instance_of(bool))
    queue_flag: bool = attrs.field(validator=v.instance_of(bool))
    intensity_flag: bool = attrs.field(validator=v.instance_of(bool))

    @property
    def any(self) -> bool:
        """True when at least one flag is raised (the stage holds promotion)."""
        return self.loss_flag or self.queue_flag or self.intensity_flag


def _check_tolerance(name: str, value: float) -> float:
    if not (math.isfinite(value) and value >= 0.0):
        raise ConfigError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _usable(baseline: float | None) -> bool:
    # The reference guard: a number and non-zero. Negative baselines are allowed (legacy path).
    return baseline is not None and baseline != 0


def loss_drift_flag(loss_total: float, baseline: float | None, tolerance: float) -> bool:
    """True when ``|loss_total − baseline| / |baseline| > tolerance`` (strict, two-sided).

    A ``None`` or zero baseline gives False.
    """
    if baseline is None or not _usable(baseline):
        return False
    return abs(loss_total - baseline) / abs(baseline) > tolerance


def drop_flag(value: float, baseline: float | None, tolerance: float) -> bool:
    """True when ``value < (1 − tolerance) · baseline`` (strict; only a drop trips it).

    A ``None`` or zero baseline gives False.
    """
    if baseline is None or not _usable(baseline):
        return False
    return value < (1.0 - tolerance) * baseline


def evaluate_flags(
    baselines: AnnealBaselines,
    *,
    loss_total: float,
    queue_events: float,
    queue_intensity: float,
    loss_tolerance: float = 0.10,
    queue_tolerance: float = 0.15,
) -> AnnealFlags:
    """Compute the guardrail flags of one PPO epoch against the previous stage's baselines.

    ``loss_total`` is the epoch's mean total loss; ``queue_events`` and ``queue_intensity`` are
    its queue-conflict event count and intensity sum. The tolerances are relative (0.10 = 10%).

    Raises:
        ConfigError: a tolerance is negative or not finite.
    """
    tol_loss = _check_tolerance("anneal_loss_tolerance", loss_tolerance)
    tol_queue = _check_tolerance("anneal_queue_tolerance", queue_tolerance)
    return AnnealFlags(
        loss_flag=loss_drift_flag(float(loss_total), baselines.loss_total, tol_loss),
        queue_flag=drop_flag(float(queue_events), baselines.queue_conflict_events, tol_queue),
        intensity_flag=drop_flag(
            float(queue_intensity), baselines.queue_conflict_intensity_sum, tol_queue
        ),
    )


def read_field(record: Any, name: str, default: Any = None) -> Any:
    """Read ``name`` from a mapping (by key) or from any other object (by attribute).

    Returns ``default`` when the key or attribute is absent. A present ``None`` is returned as is.
    """
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def _present(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name, _MISSING)
    return getattr(record, name, _MISSING)


def stage_flags(stage: Any) -> AnnealFlags:
    """The flags recorded on a PPO stage result (absent or ``None`` flags read as False).

    Each flag is read from ``anneal_<name>_flag`` (the reference's key) and, when that is absent,
    from ``<name>_flag``.
    """
    values: list[bool] = []
    for long_name, short_name in _FLAG_FIELDS:
        value = _present(stage, long_name)
        if value is _MISSING:
            value = read_field(stage, short_name, False)
        values.append(bool(value))
    return AnnealFlags(loss_flag=values[0], queue_flag=values[1], intensity_flag=values[2])


def bc_stage_passed(stage: Any) -> bool:
    """Whether a BC stage passed its accuracy gate.

    As in the reference, a missing ``passed`` counts as passed; a present value is taken by its
    truth value, so an explicit ``None`` counts as failed (the gate fails closed on a null).
    """
    value = _present(stage, "passed")
    return True if value is _MISSING else bool(value)


def anneal_status(stages: Iterable[Any]) -> AnnealStatus:
    """Reduce anneal stage results to ``"PASS"``, ``"HOLD"`` or ``"FAIL"`` (spec §4.4).

    Stages are scanned in order: a BC stage (``mode == "bc"``) that did not pass returns
    ``"FAIL"`` at once; a PPO stage (``mode == "ppo"``) with any flag raised turns the status to
    ``"HOLD"`` and the scan goes on. Stages of other modes are ignored. An empty sequence is
    ``"PASS"``. Each stage is a mapping or an object with the fields ``mode``, ``passed`` and the
    flags (``anneal_loss_flag``/``loss_flag`` and likewise for queue and intensity).
    """
    status: AnnealStatus = "PASS"
    for stage in stages:
        mode = read_field(stage, "mode")
        if mode == "bc" and not bc_stage_passed(stage):
            return "FAIL"
        if mode == "ppo" and stage_flags(stage).any:
            status = "HOLD"
    return status


def update_baselines(baselines: AnnealBaselines, final_epoch: Any) -> AnnealBaselines:
    """The baselines for the next PPO stage, taken from this stage's final epoch.

    ``final_epoch`` is a mapping or record with ``loss_total``, ``queue_conflict_events`` and
    ``queue_conflict_intensity_sum``. As in the reference, every baseline is replaced and a
    missing or ``None`` value becomes ``0.0`` — which disables that flag for the next stage rather
    than comparing against an older stage. ``baselines`` is accepted for the fold shape
    ``(baselines, epoch) -> baselines``; no value of it survives.
    """
    del baselines  # each PPO stage is compared with the previous PPO stage only

    def value(name: str) -> float:
        raw = read_field(final_epoch, name)
        return 0.0 if raw is None else float(raw)

    return AnnealBaselines(
        loss_total=value("loss_total"),
        queue_conflict_events=value("queue_conflict_events"),
        queue_conflict_intensity_sum=value("queue_conflict_intensity_sum"),
    )


def baselines_to_dict(baselines: AnnealBaselines) -> dict[str, float]:
    """The baselines as the reference's summary block (``AnnealSummary.baselines[label]``).

    Keys: ``loss_total``, ``queue_conflict_events``, ``queue_conflict_intensity`` (no ``_sum``, as
    in the reference); ``None`` baselines are left out.
    """
    pairs = (
        ("loss_total", baselines.loss_total),
        ("queue_conflict_events", baselines.queue_conflict_events),
        ("queue_conflict_intensity", baselines.queue_conflict_intensity_sum),
    )
    return {key: value for key, value in pairs if value is not None}


def baselines_from_dict(block: Mapping[str, Any]) -> AnnealBaselines:
    """Inverse of :func:`baselines_to_dict` (missing keys give ``None`` baselines).

    Raises:
        ConfigError: a value is neither a number nor ``None``.
    """
    values: dict[str, float | None] = {}
    for key, field in (
        ("loss_total", "loss_total"),
        ("queue_conflict_events", "queue_conflict_events"),
        ("queue_conflict_intensity", "queue_conflict_intensity_sum"),
    ):
        raw = block.get(key)
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int | float)):
            raise ConfigError(f"baselines.{key}: expected a number or null, got {raw!r}")
        values[field] = raw
    return AnnealBaselines(**values)
