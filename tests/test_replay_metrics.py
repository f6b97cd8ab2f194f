"""Per-sample metrics, aggregation and event counters, against the corpus and by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from _replay_helpers import capture_dirs, make_sample
from townlet.policy.replay import (
    ReplayEventCounts,
    ReplaySample,
    aggregate_metrics,
    compute_sample_metrics,
    load_replay_sample,
    record_event,
    record_events,
)


@pytest.mark.parametrize("directory", capture_dirs(), ids=lambda p: p.name)
def test_metrics_equal_the_reference_files_exactly(directory: Path) -> None:
    golden = json.loads((directory / "rollout_sample_metrics.json").read_text())
    for name, expected in golden.items():
        sample = load_replay_sample(directory / name)
        got = compute_sample_metrics(sample)
        assert got == expected
        assert list(got) == list(expected)  # key order too


def _sample(actions: list[int], lookup: object = None, **features: list[float]) -> ReplaySample:
    t = len(actions)
    names = ["rivalry_max", "rivalry_avoid_count", *features]
    columns = [np.linspace(0, 1, t), np.arange(t, dtype=float)] + [
        np.asarray(v) for v in features.values()
    ]
    metadata: dict[str, object] = {"feature_names": names}
    if lookup is not None:
        metadata["action_lookup"] = lookup
    return ReplaySample(
        features=np.stack(columns, axis=1),
        actions=np.asarray(actions),
        old_log_probs=np.full(t, -0.5, np.float32),
        value_preds=np.arange(t + 1, dtype=np.float32),
        rewards=np.array([1.0, -2.0, 0.5, 0.5][:t], np.float32),
        dones=np.zeros(t, bool),
        metadata=metadata,
    )


def test_metrics_by_hand() -> None:
    lookup = {
        '{"kind": "request", "blocked": false}': 0,
        '{"kind": "request", "blocked": true}': 1,
        '{"kind": "wait"}': 2,
    }
    sample = _sample([0, 1, 1, 3], lookup, lateness_counter=[0.0, 1.0, 2.0, 3.0])
    m = compute_sample_metrics(sample)
    assert list(m) == [
        "timesteps",
        "reward_sum",
        "reward_mean",
        "log_prob_mean",
        "value_pred_last",
        "rivalry_max_mean",
        "rivalry_max_max",
        "rivalry_avoid_count_mean",
        "rivalry_avoid_count_max",
        "lateness_mean",
        "action_nonzero",
        "action_total",
        "action_entropy",
        "action_request_count",
        "action_unknown_count",
        "action_blocked_ratio",
    ]
    assert m["timesteps"] == 4.0 and m["reward_sum"] == 0.0 and m["reward_mean"] == 0.0
    assert m["log_prob_mean"] == -0.5 and m["value_pred_last"] == 4.0
    assert m["rivalry_max_mean"] == pytest.approx(0.5) and m["rivalry_max_max"] == 1.0
    assert m["rivalry_avoid_count_mean"] == 1.5 and m["rivalry_avoid_count_max"] == 3.0
    assert m["lateness_mean"] == 1.5
    assert m["action_nonzero"] == 3.0 and m["action_total"] == 4.0
    expected_entropy = -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))
    assert m["action_entropy"] == pytest.approx(expected_entropy, abs=1e-12)
    assert m["action_request_count"] == 3.0 and m["action_unknown_count"] == 1.0
    assert m["action_blocked_ratio"] == 0.5


def test_lookup_variants() -> None:
    # id -> payload lookups (hand-made files), an unparsable payload, an empty lookup
    inverted = compute_sample_metrics(_sample([0, 1], {"0": '{"kind": "move"}', "1": "oops"}))
    assert inverted["action_move_count"] == 1.0 and inverted["action_unknown_count"] == 1.0
    empty = compute_sample_metrics(_sample([0, 0, 2], {}))
    assert empty["action_unknown_count"] == 3.0
    none = compute_sample_metrics(_sample([0, 0]))
    assert not any(k.startswith("action_") and k.endswith("_count") for k in none)
    assert none["action_blocked_ratio"] == 0.0


def test_reward_feature_mean_and_no_names() -> None:
    with_reward = compute_sample_metrics(_sample([0, 0], reward_total=[1.0, 3.0]))
    assert with_reward["reward_feature_mean"] == 2.0
    plain = make_sample(feature_dim=3)
    assert "rivalry_max_mean" not in compute_sample_metrics(plain)


def test_aggregate_by_hand() -> None:
    rows = [
        {"reward_sum": 1.0, "timesteps": 2.0, "action_total": 2.0},
        {"reward_sum": 3.0, "timesteps": 4.0, "action_total": 4.0, "extra": 5.0},
        {"reward_sum": -1.0, "timesteps": 6.0, "action_total": 6.0},
    ]
    assert aggregate_metrics(rows) == {
        "sample_count": 3.0,
        "reward_sum": 3.0,
        "reward_sum_mean": 1.0,
        "timesteps": 4.0,
        "action_total": 12.0,
        "action_total_mean": 4.0,
        "extra": 5.0,  # averaged over the dicts holding it
    }
    assert aggregate_metrics([]) == {} and aggregate_metrics([{}, {}]) == {}


def test_event_counters() -> None:
    events = [
        {"event": "queue_conflict", "intensity": 1.5},
        {"event": "queue_conflict", "intensity": "high"},
        {"event": "queue_interaction"},
        {"event": "shared_meal"},
        {"event": "employment_helped_when_late"},
        {"event": "employment_took_my_shift"},
        {"event": "chat_success", "quality": 0.5},
        {"event": "chat_success", "quality": 1},
        {"event": "chat_success"},
        {"event": "chat_failure"},
        {"event": "unknown"},
        {},
    ]
    start = ReplayEventCounts()
    counts = record_events(start, events)
    assert start == ReplayEventCounts()  # inputs unchanged
    assert counts.to_dict() == {
        "queue_conflict_events": 2.0,
        "queue_conflict_intensity_sum": 1.5,
        "shared_meal_events": 1.0,
        "late_help_events": 1.0,
        "shift_takeover_events": 1.0,
        "chat_success_events": 3.0,
        "chat_failure_events": 1.0,
        "chat_quality_mean": 0.5,
    }
    assert ReplayEventCounts().chat_quality_mean == 0.0
    assert record_event(counts, {"event": "chat_failure"}).chat_failure_events == 2
