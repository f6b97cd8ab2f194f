"""Result records (DTOs) of training: BC, PPO epochs, anneal stages and summaries, promotion.

Frozen ``attrs`` records that follow the original Townlet's DTOs key for key
(``spec/reference-dtos_orchestrator_cli.md`` §1–§2): base fields first, then each record's own
fields in declaration order. Bounds are checked on construction and a violation raises
:class:`~townlet.errors.DTOValidationError` with the reference's wording (``... must be greater
than or equal to 0``). Counts are floats, as in the reference. ``int`` values given for float
fields are widened; booleans and strings for numeric fields are rejected.

Dicts and JSON go through :mod:`townlet.dto.convert` (``to_dict``/``from_dict``); ``to_dict()``
here is a thin method for notebooks. The repr leaves out fields that are ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from townlet._validators import (
    AttrsField,
    Bounds,
    InstanceOf,
    OneOf,
    dto_error,
    int_converter,
    number_converter,
)
from townlet.errors import DTOValidationError

PPO_TELEMETRY_VERSION = 1.2
# 1.3 = 1.2 plus the townlet extension keys (``bc_coef``, ``loss_bc``, …): the reference's DTO
# rejects those keys, so a line that carries them must not claim a version it reads.
EXTENSION_TELEMETRY_VERSION = 1.3
TELEMETRY_VERSIONS: tuple[float, ...] = (1.0, 1.1, 1.2, EXTENSION_TELEMETRY_VERSION)
# Dynamic top-level keys a PPO result may carry besides its declared fields (§2.3). The
# ``*_events`` counters appear in real reference logs (``utility_outage_events``, ...).
EXTRA_KEY_PREFIX = "conflict."
EXTRA_KEY_SUFFIX = "_events"


def is_extra_key(key: str) -> bool:
    """True for a dynamic PPO key: ``conflict.*`` or a ``*_events`` counter."""
    return key.startswith(EXTRA_KEY_PREFIX) or key.endswith(EXTRA_KEY_SUFFIX)


def unknown_field_message(record: str, key: str) -> str:
    """The reference's message (its first sentence, word for word) for a PPO key that is
    neither declared nor dynamic, then what townlet adds."""
    return (
        f"Unknown field '{key}' in {record}. Only 'conflict.*' dynamic fields are allowed. "
        "(townlet also accepts '*_events' counters.)"
    )


def _num(
    default: Any = attrs.NOTHING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    nullable: bool = False,
) -> Any:
    return attrs.field(
        default=default,
        converter=number_converter(dto_error, optional=nullable or default is None),
        validator=Bounds(dto_error, ge=ge, gt=gt, le=le),
    )


def _opt(*, ge: float | None = None, le: float | None = None) -> Any:
    return _num(None, ge=ge, le=le)


def _count(default: Any = attrs.NOTHING, *, gt: int | None = None, ge: int | None = None) -> Any:
    return attrs.field(
        default=default,
        converter=int_converter(dto_error, optional=default is None),
        validator=Bounds(dto_error, gt=gt, ge=ge),
    )


def _flag(default: Any = None) -> Any:
    return attrs.field(
        default=default,
        validator=InstanceOf(dto_error, bool, "true or false", optional=default is None),
    )


def _text(default: Any = attrs.NOTHING) -> Any:
    return attrs.field(
        default=default, validator=InstanceOf(dto_error, str, "a string", optional=default is None)
    )


def _version() -> Any:
    return attrs.field(
        default=PPO_TELEMETRY_VERSION,
        converter=number_converter(dto_error),
        validator=OneOf(dto_error, TELEMETRY_VERSIONS),
    )


def _compact_repr(self: Any) -> str:
    parts = []
    for field in attrs.fields(type(self)):
        value = getattr(self, field.name)
        if value is None or (field.name == "extras" and not value):
            continue
        parts.append(f"{field.name}={value!r}")
    return f"{type(self).__name__}({', '.join(parts)})"


@attrs.frozen(kw_only=True, repr=False)
class TrainingResultBase:
    """Fields every training result carries: the record schema version and the run duration (s)."""

    schema_version: str = _text("1.0.0")
    duration_sec: float | None = _opt(ge=0)

    __repr__ = _compact_repr

    def to_dict(self) -> dict[str, Any]:
        """This record as a JSON-ready dict (same as :func:`townlet.dto.convert.to_dict`)."""
        from townlet.dto.convert import to_dict

        return to_dict(self)

    def model_dump(self) -> dict[str, Any]:
        """:meth:`to_dict` under the reference's pydantic name — a thin alias for code written
        against its DTOs (``townlet.compat``)."""
        return self.to_dict()


@attrs.frozen(kw_only=True, repr=False)
class BCTrainingResult(TrainingResultBase):
    """The result of a behaviour-cloning run (the reference's 13 keys).

    ``accuracy``/``loss`` are on the training frames of the last epoch; ``val_accuracy`` and
    ``val_loss`` are on the held-out split (DESIGN §5.6; the reference declared them but never
    filled them) and are None without a validation split. ``manifest`` is the path as a string.
    """

    mode: str = _text("bc")
    manifest: str = _text()
    accuracy: float = _num(ge=0, le=1)
    loss: float = _num(ge=0)
    learning_rate: float = _num(gt=0)
    batch_size: int = _count(gt=0)
    epochs: int = _count(gt=0)
    val_accuracy: float | None = _opt(ge=0, le=1)
    val_loss: float | None = _opt(ge=0)
    weight_decay: float | None = _opt(ge=0)
    device: str | None = _text(None)


def _extras_converter(value: Mapping[str, float]) -> dict[str, float]:
    return dict(value)


def _check_extras(instance: object, attribute: AttrsField, value: Any) -> None:
    for key, item in value.items():
        if not isinstance(key, str) or not is_extra_key(key):
            raise dto_error(instance, "extras", unknown_field_message(type(instance).__name__, key))
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise dto_error(instance, key, f"expected a number, got {item!r}")


@attrs.frozen(kw_only=True, repr=False)
class PPOTrainingResult(TrainingResultBase):
    """The summary of one PPO epoch: one telemetry line (``spec/reference-ppo.md`` §7–§11).

    Groups: core (required), health (0.0 by default; None only for old logs that lack them),
    telemetry 1.1 (None until set), social counters, 1.2 anneal context (set only while
    annealing), dataset baseline metrics, townlet extensions, and ``extras`` — the dynamic
    ``conflict.*`` averages (and ``*_events`` counters of old logs), written at the top level.

    Townlet extensions (absent from the reference; written only when not None): ``bc_coef`` and
    ``loss_bc`` (the behaviour-cloning term, DESIGN §5.2), ``critic_warmup`` (True while only the
    value head trains), ``episode_return_mean``/``episode_length_mean`` (online rollouts).
    Units: ``*_sec`` are seconds; every count is a float.
    """

    # Core, telemetry 1.0.
    epoch: float = _num(gt=0)
    updates: float = _num(ge=0)
    transitions: float = _num(ge=0)
    loss_policy: float = _num()
    loss_value: float = _num()
    loss_entropy: float = _num()
    loss_total: float = _num()
    clip_fraction: float = _num(ge=0, le=1)
    adv_mean: float = _num()
    adv_std: float = _num(ge=0)
    grad_norm: float = _num(ge=0)
    kl_divergence: float = _num()
    telemetry_version: float = _version()
    lr: float = _num(gt=0)
    steps: float = _num(ge=0)
    # Health (emitted without a version gate).
    adv_zero_std_batches: float | None = _num(0.0, ge=0, nullable=True)
    adv_min_std: float | None = _num(0.0, ge=0, nullable=True)
    clip_triggered_minibatches: float | None = _num(0.0, ge=0, nullable=True)
    clip_fraction_max: float | None = _num(0.0, ge=0, le=1, nullable=True)
    # Telemetry 1.1.
    epoch_duration_sec: float | None = _opt(ge=0)
    data_mode: str | None = attrs.field(
        default=None, validator=OneOf(dto_error, ("replay", "rollout", "mixed"))
    )
    cycle_id: float | None = _opt()
    batch_entropy_mean: float | None = _opt()
    batch_entropy_std: float | None = _opt(ge=0)
    grad_norm_max: float | None = _opt(ge=0)
    kl_divergence_max: float | None = _opt()
    reward_advantage_corr: float | None = _opt(ge=-1, le=1)
    rollout_ticks: float | None = _opt(ge=0)
    log_stream_offset: float | None = _opt(ge=0)
    queue_conflict_events: float | None = _opt(ge=0)
    queue_conflict_intensity_sum: float | None = _opt(ge=0)
    shared_meal_events: float | None = _opt(ge=0)
    late_help_events: float | None = _opt(ge=0)
    shift_takeover_events: float | None = _opt(ge=0)
    chat_success_events: float | None = _opt(ge=0)
    chat_failure_events: float | None = _opt(ge=0)
    chat_quality_mean: float | None = _opt(ge=0, le=1)
    # Telemetry 1.2: anneal context.
    anneal_cycle: float | None = _opt()
    anneal_stage: str | None = _text(None)
    anneal_dataset: str | None = _text(None)
    anneal_bc_accuracy: float | None = _opt(ge=0, le=1)
    anneal_bc_threshold: float | None = _opt(ge=0, le=1)
    anneal_bc_passed: bool | None = _flag()
    anneal_loss_baseline: float | None = _opt()
    anneal_queue_baseline: float | None = _opt()
    anneal_intensity_baseline: float | None = _opt()
    anneal_loss_flag: bool | None = _flag()
    anneal_queue_flag: bool | None = _flag()
    anneal_intensity_flag: bool | None = _flag()
    # Dataset baseline metrics.
    baseline_sample_count: float | None = _opt(ge=0)
    baseline_reward_mean: float | None = _opt()
    baseline_reward_sum: float | None = _opt()
    baseline_reward_sum_mean: float | None = _opt()
    baseline_log_prob_mean: float | None = _opt()
    # Townlet extensions.
    bc_coef: float | None = _opt(ge=0)
    loss_bc: float | None = _opt()
    critic_warmup: bool | None = _flag()
    episode_return_mean: float | None = _opt()
    episode_length_mean: float | None = _opt(ge=0)
    extras: Mapping[str, float] = attrs.field(
        factory=dict, converter=_extras_converter, validator=_check_extras
    )


EXTENSION_FIELDS: tuple[str, ...] = (
    "bc_coef",
    "loss_bc",
    "critic_warmup",
    "episode_return_mean",
    "episode_length_mean",
)


@attrs.frozen(kw_only=True, repr=False)
class AnnealStageResult(TrainingResultBase):
    """One stage of an anneal run. BC stages fill accuracy…rolled_back; PPO stages the losses,
    queue counters and guardrail flags. ``cycle`` is a float, as in the reference."""

    cycle: float = _num(ge=0)
    mode: str = _text()
    accuracy: float | None = _opt(ge=0, le=1)
    loss: float | None = _opt(ge=0)
    threshold: float | None = _opt(ge=0, le=1)
    passed: bool | None = _flag()
    bc_weight: float | None = _opt(ge=0, le=1)
    rolled_back: bool | None = _flag()
    loss_total: float | None = _opt()
    loss_policy: float | None = _opt()
    loss_value: float | None = _opt()
    queue_conflict_events: float | None = _opt(ge=0)
    queue_conflict_intensity_sum: float | None = _opt(ge=0)
    anneal_loss_flag: bool | None = _flag()
    anneal_queue_flag: bool | None = _flag()
    anneal_intensity_flag: bool | None = _flag()


def _stage_record(item: Any) -> AnnealStageResult:
    # The reference coerced stage dicts into records; so do we, by keyword construction (which
    # runs the same converters and validators) so that cattrs stays in townlet.dto.convert.
    if not isinstance(item, Mapping):
        return item  # type: ignore[no-any-return]
    unknown = sorted(set(item) - set(attrs.fields_dict(AnnealStageResult)))
    if unknown:
        raise DTOValidationError(f"AnnealStageResult: unknown keys {unknown}")
    return AnnealStageResult(**item)


def _stages_converter(value: Any) -> tuple[AnnealStageResult, ...]:
    return tuple(_stage_record(item) for item in value)


def _baselines_converter(value: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    return {label: {k: float(v) for k, v in inner.items()} for label, inner in value.items()}


@attrs.frozen(kw_only=True, repr=False)
class AnnealSummary(TrainingResultBase):
    """An anneal run: its stages, the PASS/HOLD/FAIL status, and the guardrail baselines.

    ``baselines`` maps a dataset label to ``loss_total``/``queue_conflict_events``/
    ``queue_conflict_intensity`` (no ``_sum`` suffix, as in the reference).
    """

    stages: tuple[AnnealStageResult, ...] = attrs.field(converter=_stages_converter)
    status: str = _text()
    dataset_label: str = _text()
    baselines: Mapping[str, Mapping[str, float]] = attrs.field(
        factory=dict, converter=_baselines_converter
    )
    promotion_pass_streak: int | None = _count(None, ge=0)
    promotion_candidate_ready: bool | None = _flag()


@attrs.frozen(kw_only=True, repr=False)
class PromotionEvaluation:
    """What recording one anneal evaluation did to the promotion streak (the adapter's dict)."""

    pass_streak: int = _count(ge=0)
    required_passes: int = _count(ge=1)
    candidate_ready: bool = _flag(attrs.NOTHING)
    last_result: Literal["pass", "fail"] = attrs.field(validator=OneOf(dto_error, ("pass", "fail")))
    last_evaluated_tick: int = _count(ge=0)

    __repr__ = _compact_repr

    def to_dict(self) -> dict[str, Any]:
        """This record as a JSON-ready dict (same as :func:`townlet.dto.convert.to_dict`)."""
        from townlet.dto.convert import to_dict

        return to_dict(self)

    def model_dump(self) -> dict[str, Any]:
        """:meth:`to_dict` under the reference's pydantic name — a thin alias for code written
        against its DTOs (``townlet.compat``)."""
        return self.to_dict()
