"""PPO epoch telemetry arithmetic (``spec/reference-ppo.md`` §7–§11), torch-free.

An epoch's minibatch stats and the dataset facts are reduced here to one
:class:`~townlet.dto.policy.PPOTrainingResult` with the reference's formulas: sums over
minibatches divided by the update count, the health quartet, entropy mean/std, grad-norm and
|KL| maxima, the reward–advantage Pearson correlation (float64), conflict averages over batches,
baseline metrics and social counters, and — while annealing — the twelve ``anneal_*`` fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import attrs
import numpy as np
from numpy.typing import NDArray

from townlet.config import PPOConfig
from townlet.dto.policy import PPO_TELEMETRY_VERSION, PPOTrainingResult
from townlet.errors import ConfigError
from townlet.policy.replay.metrics import ReplayEventCounts
from townlet.policy.training.strategies.anneal.flags import AnnealBaselines, evaluate_flags
from townlet.policy.training.strategies.ppo.stats import MinibatchStats

DataMode = Literal["replay", "rollout", "mixed"]
DEFAULT_LABEL = "training_dataset"
ZERO_STD = 1e-8  # a batch whose normalised-advantage std is below this counts as degenerate


class _DatasetLike(Protocol):
    @property
    def label(self) -> str | None: ...
    @property
    def data_mode(self) -> str: ...
    @property
    def rollout_ticks(self) -> int: ...
    @property
    def baseline_metrics(self) -> Mapping[str, float]: ...
    @property
    def event_counts(self) -> ReplayEventCounts: ...


def _float_dict(value: Mapping[str, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in value.items()}


def _data_mode(value: str) -> DataMode:
    if value not in ("replay", "rollout", "mixed"):
        raise ConfigError(f"data_mode must be 'replay', 'rollout' or 'mixed', got {value!r}")
    return value  # type: ignore[return-value]


@attrs.frozen(kw_only=True)
class PPODatasetInfo:
    """What an epoch summary reports about its data, besides the batches themselves.

    ``label`` names the dataset in error messages; ``data_mode`` is ``"replay"`` (disk),
    ``"rollout"`` (fresh, in memory) or ``"mixed"``; ``rollout_ticks`` the ticks a rollout ran
    (0 for replay); ``baseline_metrics`` the dataset's aggregated sample metrics (§10);
    ``event_counts`` the social counters of a rollout (zero for disk data).
    """

    label: str = DEFAULT_LABEL
    data_mode: DataMode = attrs.field(default="replay", converter=_data_mode)
    rollout_ticks: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    baseline_metrics: Mapping[str, float] = attrs.field(factory=dict, converter=_float_dict)
    event_counts: ReplayEventCounts = attrs.field(factory=ReplayEventCounts)


def dataset_info(dataset: _DatasetLike, *, data_mode: str | None = None) -> PPODatasetInfo:
    """The :class:`PPODatasetInfo` of a ``ReplayDataset``/``InMemoryReplayDataset``.

    The label falls back to ``"training_dataset"`` as in the reference; ``data_mode`` overrides
    the dataset's own (e.g. ``"mixed"``).
    """
    mode = data_mode or dataset.data_mode
    return PPODatasetInfo(
        label=dataset.label or DEFAULT_LABEL,
        data_mode=_data_mode(mode),
        rollout_ticks=dataset.rollout_ticks if mode != "replay" else 0,
        baseline_metrics=dataset.baseline_metrics,
        event_counts=dataset.event_counts,
    )


@attrs.frozen(kw_only=True)
class AnnealContext:
    """The anneal stage a PPO run belongs to (§9); its fields fill the 12 ``anneal_*`` keys.

    ``bc_accuracy`` is None when no BC stage ran before (then ``bc_passed`` is True);
    ``baselines`` are the previous PPO stage's final values (None: first stage, never flags).
    """

    cycle: int = attrs.field(validator=attrs.validators.ge(0))
    dataset_label: str
    stage: str = "ppo"
    bc_accuracy: float | None = None
    bc_threshold: float = 0.9
    bc_passed: bool = True
    baselines: AnnealBaselines = attrs.field(factory=AnnealBaselines)
    loss_tolerance: float = 0.10
    queue_tolerance: float = 0.15


@attrs.frozen(kw_only=True)
class BatchFacts:
    """Per-epoch constants of a list of prepared batches (GAE uses stored values, so they do not
    change between epochs): ``adv_min_std`` (0 without batches), ``adv_zero_std_batches``, the
    reward–advantage correlation and the ``conflict.*_avg`` extras."""

    transitions: int
    adv_min_std: float
    adv_zero_std_batches: int
    reward_advantage_corr: float
    conflict: Mapping[str, float] = attrs.field(factory=dict, converter=_float_dict)


def pearson(x: NDArray[Any], y: NDArray[Any]) -> float:
    """Pearson r of two equal-length vectors in float64, clamped to [-1, 1].

    0.0 when either is empty or has zero population std (the reference's convention).
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0 or a.size != b.size:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    sa, sb = math.sqrt(float(np.mean(a * a))), math.sqrt(float(np.mean(b * b)))
    if sa == 0.0 or sb == 0.0:
        return 0.0
    r = float(np.mean(a * b)) / (sa * sb)
    return max(-1.0, min(1.0, r))


def batch_facts(
    batch_stds: Sequence[float],
    rewards: Sequence[NDArray[Any]],
    advantages: Sequence[NDArray[Any]],
    conflict_stats: Sequence[Mapping[str, float]],
    transitions: int,
) -> BatchFacts:
    """Reduce per-batch facts (§6.3, §7, §11): the minimum and degenerate count of the batch
    advantage stds, the Pearson correlation of all rewards with all (normalised) advantages, and
    each conflict statistic summed over batches and divided by the batch count."""
    sums: dict[str, float] = {}
    for stats in conflict_stats:
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + float(value)
    count = max(1, len(conflict_stats))
    corr = pearson(
        np.concatenate(rewards) if rewards else np.zeros(0),
        np.concatenate(advantages) if advantages else np.zeros(0),
    )
    min_std = min(batch_stds) if batch_stds else 0.0
    return BatchFacts(
        transitions=transitions,
        adv_min_std=0.0 if math.isinf(min_std) else min_std,
        adv_zero_std_batches=sum(1 for s in batch_stds if s < ZERO_STD),
        reward_advantage_corr=corr,
        conflict={f"conflict.{k}_avg": v / count for k, v in sums.items()},
    )


def _population_std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _core_fields(stats: Sequence[MinibatchStats]) -> dict[str, float]:
    updates = len(stats)

    def mean(name: str) -> float:
        return math.fsum(getattr(s, name) for s in stats) / updates

    entropies = [s.loss_entropy for s in stats]
    clips = [s.clip_fraction for s in stats]
    return {
        "updates": float(updates),
        "transitions": float(sum(s.transitions for s in stats)),
        "loss_policy": mean("loss_policy"),
        "loss_value": mean("loss_value"),
        "loss_entropy": mean("loss_entropy"),
        "loss_total": mean("loss_total"),
        "clip_fraction": mean("clip_fraction"),
        "adv_mean": mean("adv_mean"),
        "adv_std": mean("adv_std"),
        "grad_norm": mean("grad_norm"),
        "kl_divergence": mean("kl_divergence"),
        "clip_triggered_minibatches": float(sum(1 for c in clips if c > 0.0)),
        "clip_fraction_max": max([0.0, *clips]),
        "batch_entropy_mean": mean("loss_entropy"),
        "batch_entropy_std": _population_std(entropies),
        "grad_norm_max": max([0.0, *(s.grad_norm for s in stats)]),
        "kl_divergence_max": max([0.0, *(abs(s.kl_divergence) for s in stats)]),
    }


def baseline_fields(metrics: Mapping[str, float]) -> dict[str, float]:
    """The ``baseline_*`` keys of §10; empty when the dataset has no baseline metrics."""
    if not metrics:
        return {}
    out = {
        "baseline_sample_count": float(metrics.get("sample_count", 0.0)),
        "baseline_reward_mean": float(metrics.get("reward_mean", 0.0)),
        "baseline_reward_sum": float(metrics.get("reward_sum", 0.0)),
    }
    if "reward_sum_mean" in metrics:
        out["baseline_reward_sum_mean"] = float(metrics["reward_sum_mean"])
    if "log_prob_mean" in metrics:
        out["baseline_log_prob_mean"] = float(metrics["log_prob_mean"])
    return out


def anneal_fields(
    context: AnnealContext, *, loss_total: float, events: ReplayEventCounts
) -> dict[str, Any]:
    """The twelve ``anneal_*`` keys of §9 for one epoch, flags from
    :func:`~townlet.policy.training.strategies.anneal.flags.evaluate_flags`."""
    flags = evaluate_flags(
        context.baselines,
        loss_total=loss_total,
        queue_events=float(events.queue_conflict_events),
        queue_intensity=events.queue_conflict_intensity_sum,
        loss_tolerance=context.loss_tolerance,
        queue_tolerance=context.queue_tolerance,
    )
    return {
        "anneal_cycle": float(context.cycle),
        "anneal_stage": context.stage,
        "anneal_dataset": context.dataset_label,
        "anneal_bc_accuracy": context.bc_accuracy,
        "anneal_bc_threshold": float(context.bc_threshold),
        "anneal_bc_passed": bool(context.bc_passed),
        "anneal_loss_baseline": context.baselines.loss_total,
        "anneal_queue_baseline": context.baselines.queue_conflict_events,
        "anneal_intensity_baseline": context.baselines.queue_conflict_intensity_sum,
        "anneal_loss_flag": flags.loss_flag,
        "anneal_queue_flag": flags.queue_flag,
        "anneal_intensity_flag": flags.intensity_flag,
    }


@attrs.frozen(kw_only=True)
class EpochCounters:
    """The run counters an epoch reports: 1-based ``epoch``, cumulative ``steps`` and
    ``log_stream_offset`` after this epoch, and the run's ``cycle_id``."""

    epoch: int
    steps: int
    log_stream_offset: int
    cycle_id: int


def summarize_epoch(
    stats: Sequence[MinibatchStats],
    facts: BatchFacts,
    info: PPODatasetInfo,
    cfg: PPOConfig,
    counters: EpochCounters,
    *,
    duration_sec: float,
    anneal: AnnealContext | None = None,
    critic_warmup: bool = False,
) -> PPOTrainingResult:
    """The telemetry record of one epoch (§7–§11) from its minibatch stats.

    Raises ``ValueError`` when ``stats`` is empty (no update was performed).
    """
    if not stats:
        raise ValueError("No PPO mini-batch updates were performed")
    core = _core_fields(stats)
    fields: dict[str, Any] = {
        "epoch": float(counters.epoch),
        **core,
        "telemetry_version": PPO_TELEMETRY_VERSION,
        "lr": cfg.learning_rate,
        "steps": float(counters.steps),
        "adv_zero_std_batches": float(facts.adv_zero_std_batches),
        "adv_min_std": facts.adv_min_std,
        "epoch_duration_sec": max(0.0, duration_sec),
        "data_mode": info.data_mode,
        "cycle_id": float(counters.cycle_id),
        "reward_advantage_corr": facts.reward_advantage_corr,
        "rollout_ticks": float(info.rollout_ticks),
        "log_stream_offset": float(counters.log_stream_offset),
        **info.event_counts.to_dict(),
        **baseline_fields(info.baseline_metrics),
    }
    if anneal is not None:
        fields.update(
            anneal_fields(anneal, loss_total=core["loss_total"], events=info.event_counts)
        )
    if cfg.bc_coef > 0.0:
        fields["bc_coef"] = cfg.bc_coef
        fields["loss_bc"] = math.fsum(s.loss_bc for s in stats) / len(stats)
    if critic_warmup:
        fields["critic_warmup"] = True
    return PPOTrainingResult(**fields, extras=facts.conflict)
