"""PPO epoch telemetry arithmetic (reference-ppo §7–§11): hand-computed values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from townlet.config import PPOConfig
from townlet.errors import ConfigError
from townlet.policy.replay import ReplayEventCounts
from townlet.policy.training.strategies.anneal.flags import AnnealBaselines
from townlet.policy.training.strategies.ppo.stats import MinibatchStats
from townlet.policy.training.strategies.ppo.summary import (
    AnnealContext,
    BatchFacts,
    EpochCounters,
    PPODatasetInfo,
    baseline_fields,
    batch_facts,
    pearson,
    summarize_epoch,
)

_DEFAULTS: dict[str, Any] = {
    "loss_total": 1.0, "loss_policy": 0.1, "loss_value": 2.0, "loss_entropy": 1.0,
    "loss_bc": 0.5, "clip_fraction": 0.0, "kl_divergence": 0.0, "grad_norm": 1.0,
    "adv_mean": 0.0, "adv_std": 1.0, "transitions": 4,
}  # fmt: skip


def _Stats(**fields: Any) -> MinibatchStats:  # noqa: N802 - reads like the record it builds
    return MinibatchStats(**{**_DEFAULTS, **fields})


FACTS = BatchFacts(
    transitions=8,
    adv_min_std=0.5,
    adv_zero_std_batches=1,
    reward_advantage_corr=0.25,
    conflict={"conflict.rivalry_max_mean_avg": 0.5},
)
COUNTERS = EpochCounters(epoch=2, steps=16, log_stream_offset=5, cycle_id=0)


def test_pearson_hand_values() -> None:
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert pearson(np.array([0.06, 0.08]), np.array([1.0, -1.0])) == pytest.approx(-1.0)
    # x = [1, 2, 3, 4], y = [1, 3, 2, 4]: cov = 1.0, var_x = var_y = 1.25 -> r = 0.8
    assert pearson(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])) == pytest.approx(0.8)
    assert pearson(np.array([1.0, 1.0]), np.array([1.0, 2.0])) == 0.0  # zero std
    assert pearson(np.zeros(0), np.zeros(0)) == 0.0


def test_pearson_is_clamped_to_unit_interval() -> None:
    x = np.full(1000, 0.1, dtype=np.float32) + np.arange(1000, dtype=np.float32) * 1e-7
    assert -1.0 <= pearson(x, x) <= 1.0


def test_batch_facts_reduce_per_batch_values() -> None:
    facts = batch_facts(
        [0.9999, 1e-9, 0.8],
        [np.array([1.0, 2.0], np.float32), np.array([3.0], np.float32), np.zeros(0, np.float32)],
        [np.array([1.0, 2.0], np.float32), np.array([3.0], np.float32), np.zeros(0, np.float32)],
        [{"rivalry_max_mean": 0.3, "rivalry_max_max": 0.6}, {"rivalry_max_mean": 0.9}, {}],
        transitions=3,
    )
    assert facts.adv_min_std == 1e-9
    assert facts.adv_zero_std_batches == 1
    assert facts.reward_advantage_corr == pytest.approx(1.0)
    # Divided by the batch count (3) even where a batch lacks the key (§11).
    assert facts.conflict == pytest.approx(
        {"conflict.rivalry_max_mean_avg": 0.4, "conflict.rivalry_max_max_avg": 0.2}
    )


def test_batch_facts_without_batches() -> None:
    facts = batch_facts([], [], [], [], transitions=0)
    assert (facts.adv_min_std, facts.adv_zero_std_batches, facts.reward_advantage_corr) == (
        0.0,
        0,
        0.0,
    )


def test_summary_formulas() -> None:
    stats = [
        _Stats(
            loss_total=1.0, loss_entropy=1.0, clip_fraction=0.0, grad_norm=0.2, kl_divergence=-0.3
        ),
        _Stats(
            loss_total=3.0, loss_entropy=2.0, clip_fraction=0.5, grad_norm=0.6, kl_divergence=0.1
        ),
    ]
    info = PPODatasetInfo(label="x", data_mode="rollout", rollout_ticks=7)
    record = summarize_epoch(stats, FACTS, info, PPOConfig(), COUNTERS, duration_sec=0.5)
    assert record.epoch == 2.0 and record.updates == 2.0 and record.transitions == 8.0
    assert record.loss_total == 2.0
    assert record.loss_entropy == record.batch_entropy_mean == 1.5
    assert record.batch_entropy_std == 0.5  # population std of [1, 2]
    assert record.clip_fraction == 0.25 and record.clip_fraction_max == 0.5
    assert record.clip_triggered_minibatches == 1.0
    assert record.grad_norm == pytest.approx(0.4) and record.grad_norm_max == 0.6
    assert record.kl_divergence == pytest.approx(-0.1)
    assert record.kl_divergence_max == 0.3  # max |kl|
    assert (record.steps, record.log_stream_offset, record.cycle_id) == (16.0, 5.0, 0.0)
    assert (record.data_mode, record.rollout_ticks, record.lr) == ("rollout", 7.0, 3e-4)
    assert (record.adv_min_std, record.adv_zero_std_batches) == (0.5, 1.0)
    assert record.reward_advantage_corr == 0.25
    assert record.epoch_duration_sec == 0.5
    assert record.extras == {"conflict.rivalry_max_mean_avg": 0.5}
    assert record.queue_conflict_events == 0.0 and record.chat_quality_mean == 0.0
    assert record.bc_coef is None and record.loss_bc is None and record.critic_warmup is None
    assert record.anneal_cycle is None and record.baseline_sample_count is None


def test_single_minibatch_entropy_std_is_zero_and_extensions() -> None:
    record = summarize_epoch(
        [_Stats(loss_bc=0.7)],
        FACTS,
        PPODatasetInfo(),
        PPOConfig(bc_coef=0.5),
        COUNTERS,
        duration_sec=0.0,
        critic_warmup=True,
    )
    assert record.batch_entropy_std == 0.0
    assert (record.bc_coef, record.loss_bc, record.critic_warmup) == (0.5, 0.7, True)


def test_no_updates_is_an_error() -> None:
    with pytest.raises(ValueError, match="No PPO mini-batch updates were performed"):
        summarize_epoch([], FACTS, PPODatasetInfo(), PPOConfig(), COUNTERS, duration_sec=0.0)


def test_baseline_fields_rules() -> None:
    assert baseline_fields({}) == {}
    assert baseline_fields({"reward_sum": 2.0}) == {
        "baseline_sample_count": 0.0,
        "baseline_reward_mean": 0.0,
        "baseline_reward_sum": 2.0,
    }
    full = baseline_fields(
        {
            "sample_count": 3,
            "reward_mean": -0.2,
            "reward_sum": -36,
            "reward_sum_mean": -12,
            "log_prob_mean": -1.37,
        }
    )
    assert full["baseline_reward_sum_mean"] == -12.0 and full["baseline_log_prob_mean"] == -1.37


def test_social_counters_and_anneal_fields() -> None:
    events = ReplayEventCounts(
        queue_conflict_events=8,
        queue_conflict_intensity_sum=10.0,
        chat_success_events=2,
        chat_quality_sum=1.5,
    )
    anneal = AnnealContext(
        cycle=3,
        dataset_label="qc",
        bc_accuracy=0.95,
        baselines=AnnealBaselines(
            loss_total=1.0, queue_conflict_events=10.0, queue_conflict_intensity_sum=10.0
        ),
    )
    info = PPODatasetInfo(event_counts=events, baseline_metrics={"sample_count": 1})
    record = summarize_epoch(
        [_Stats(loss_total=1.2)],
        FACTS,
        info,
        PPOConfig(),
        COUNTERS,
        duration_sec=0.0,
        anneal=anneal,
    )
    assert record.queue_conflict_events == 8.0 and record.chat_quality_mean == 0.75
    assert record.baseline_sample_count == 1.0
    assert (record.anneal_cycle, record.anneal_stage, record.anneal_dataset) == (3.0, "ppo", "qc")
    assert (record.anneal_bc_accuracy, record.anneal_bc_threshold) == (0.95, 0.9)
    assert record.anneal_bc_passed is True
    assert record.anneal_loss_baseline == 1.0 and record.anneal_queue_baseline == 10.0
    # |1.2 - 1| / 1 > 0.10; 8 < 0.85 * 10; 10 is not < 8.5
    assert record.anneal_loss_flag is True
    assert record.anneal_queue_flag is True
    assert record.anneal_intensity_flag is False


def test_first_anneal_stage_never_flags() -> None:
    anneal = AnnealContext(cycle=0, dataset_label="qc")
    record = summarize_epoch(
        [_Stats()], FACTS, PPODatasetInfo(), PPOConfig(), COUNTERS, duration_sec=0.0, anneal=anneal
    )
    assert record.anneal_loss_baseline is None and record.anneal_bc_accuracy is None
    assert not (record.anneal_loss_flag or record.anneal_queue_flag or record.anneal_intensity_flag)


def test_dataset_info_rejects_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="data_mode"):
        PPODatasetInfo(data_mode="online")
    assert math.isclose(PPODatasetInfo().rollout_ticks, 0)
