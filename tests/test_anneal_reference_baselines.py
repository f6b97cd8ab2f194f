"""Guardrail baselines pinned to a reference policy's rollout (the demo's BC policy)."""

from __future__ import annotations

from townlet.policy.training.strategies.anneal_flags import (
    AnnealBaselines,
    baselines_from_dict,
    baselines_to_dict,
    evaluate_flags,
    reference_baselines,
    update_baselines,
)

EPOCH = {"loss_total": 0.4, "queue_conflict_events": 50.0, "queue_conflict_intensity_sum": 30.0}


def test_reference_counters_survive_every_update() -> None:
    base = reference_baselines(100.0, 60.0)
    assert base.queue_conflict_events == 100.0 and base.loss_total is None
    after = update_baselines(base, EPOCH)
    assert after.loss_total == 0.4  # the loss is still compared stage to stage
    assert after.queue_conflict_events == 100.0 and after.queue_conflict_intensity_sum == 60.0
    assert update_baselines(after, EPOCH) == after


def test_without_reference_the_previous_stage_is_the_baseline() -> None:
    after = update_baselines(AnnealBaselines(queue_conflict_events=100.0), EPOCH)
    assert after.queue_conflict_events == 50.0
    assert after.reference_queue_conflict_events is None


def test_flags_compare_with_the_reference_and_its_tolerance() -> None:
    base = update_baselines(reference_baselines(100.0, 60.0), EPOCH)
    # A stage whose rollouts swing down by 40% from the teacher's is within a 0.5 tolerance...
    kept = evaluate_flags(base, loss_total=0.5, queue_events=60, queue_intensity=36,
                          loss_tolerance=1.0, queue_tolerance=0.5)  # fmt: skip
    assert not kept.any
    # ... one that loses more than half of the teacher's queue use is held.
    dropped = evaluate_flags(base, loss_total=0.5, queue_events=40, queue_intensity=20,
                             loss_tolerance=1.0, queue_tolerance=0.5)  # fmt: skip
    assert dropped.queue_flag and dropped.intensity_flag and not dropped.loss_flag


def test_reference_round_trips_through_the_summary_dict() -> None:
    base = update_baselines(reference_baselines(100.0, 60.0), EPOCH)
    block = baselines_to_dict(base)
    assert block["reference_queue_conflict_events"] == 100.0
    assert baselines_from_dict(block) == base
    plain = baselines_to_dict(AnnealBaselines(loss_total=1.0))
    assert plain == {"loss_total": 1.0}  # the reference's block is unchanged without it
