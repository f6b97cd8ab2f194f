"""ReplayBatch: stacking, validation, conflict stats and summaries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from _replay_helpers import FEATURE_NAMES, make_sample
from townlet.errors import ReplayDataError
from townlet.policy.replay import ReplayBatch, build_batch, summarize_batch


def test_build_batch_stacks_and_describes() -> None:
    samples = [
        make_sample(3, seed=1, metadata={"metrics": {"x": 1.0}, "action_dim": 4}),
        make_sample(3, seed=2),
    ]
    batch = build_batch(samples)
    assert batch.maps.shape == (2, 3, 2, 3, 3)
    assert batch.features.shape == (2, 3, 4)
    assert batch.actions.shape == batch.rewards.shape == batch.dones.shape == (2, 3)
    assert batch.value_preds.shape == (2, 4) and batch.has_bootstrap_value
    assert batch.actions.dtype == np.int64 and batch.dones.dtype == np.bool_
    np.testing.assert_array_equal(batch.features[1], samples[1].features)
    assert batch.metadata["metrics"] == [{"x": 1.0}, None]
    assert batch.metadata["action_dim"] == 4
    assert batch.metadata["feature_names"] == FEATURE_NAMES
    assert batch.metadata["timesteps"] == 3 and batch.metadata["value_pred_steps"] == 4
    assert [m["action_dim"] for m in batch.sample_metadata if "action_dim" in m] == [4]
    batch.rewards[0, 0] = 5.0  # batch arrays are fresh and writable (torch-friendly)
    assert samples[0].rewards[0] != 5.0


def test_build_batch_errors() -> None:
    with pytest.raises(ReplayDataError, match="at least one sample required"):
        build_batch([])
    with pytest.raises(ReplayDataError, match="cannot batch sample 1"):
        build_batch([make_sample(3), make_sample(4)])


def test_conflict_stats_over_batch_and_time() -> None:
    a = make_sample(2, seed=1)
    batch = build_batch([a, make_sample(2, seed=2)])
    col = batch.features[..., 1].reshape(-1)
    avoid = batch.features[..., 2].reshape(-1)
    assert batch.conflict_stats() == {
        "rivalry_max_mean": float(col.mean()),
        "rivalry_max_max": float(col.max()),
        "rivalry_avoid_count_mean": float(avoid.mean()),
        "rivalry_avoid_count_max": float(avoid.max()),
    }
    assert build_batch([make_sample(feature_dim=3)]).conflict_stats() == {}


def test_conflict_stats_by_hand() -> None:
    features = np.zeros((2, 2, 4), np.float32)
    features[..., 1] = [[0.0, 1.0], [0.5, 0.5]]
    features[..., 2] = [[1.0, 1.0], [3.0, 3.0]]
    batch = ReplayBatch(
        maps=np.zeros((2, 2, 1, 1, 1)),
        features=features,
        actions=np.zeros((2, 2), np.int64),
        old_log_probs=np.zeros((2, 2)),
        value_preds=np.zeros((2, 2)),
        rewards=np.zeros((2, 2)),
        dones=np.zeros((2, 2), bool),
        metadata={"feature_names": FEATURE_NAMES},
    )
    assert batch.conflict_stats() == {
        "rivalry_max_mean": 0.5,
        "rivalry_max_max": 1.0,
        "rivalry_avoid_count_mean": 2.0,
        "rivalry_avoid_count_max": 3.0,
    }
    assert summarize_batch(batch, 4) == {
        "batch": 4.0,
        "batch_size": 2.0,
        "timesteps": 2.0,
        "feature_dim": 4.0,
        "conflict.rivalry_max_mean": 0.5,
        "conflict.rivalry_max_max": 1.0,
        "conflict.rivalry_avoid_count_mean": 2.0,
        "conflict.rivalry_avoid_count_max": 3.0,
    }


def _batch_arrays(**overrides: Any) -> dict[str, Any]:
    arrays: dict[str, Any] = {
        "maps": np.zeros((2, 3, 1, 2, 2)),
        "features": np.zeros((2, 3, 4)),
        "actions": np.zeros((2, 3), np.int64),
        "old_log_probs": np.zeros((2, 3)),
        "value_preds": np.zeros((2, 4)),
        "rewards": np.zeros((2, 3)),
        "dones": np.zeros((2, 3), bool),
    }
    arrays.update(overrides)
    return arrays


def test_flat_batches_are_upgraded() -> None:
    batch = ReplayBatch(
        **_batch_arrays(
            maps=np.zeros((2, 1, 2, 2)),
            features=np.zeros((2, 4)),
            actions=np.zeros(2, np.int64),
            old_log_probs=np.zeros(2),
            value_preds=np.zeros(2),
            rewards=np.zeros(2),
            dones=np.zeros(2, bool),
        )
    )
    assert batch.maps.shape == (2, 1, 1, 2, 2) and batch.features.shape == (2, 1, 4)
    assert batch.timesteps == 1 and batch.batch_size == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"maps": np.zeros((2, 3))}, "ReplayBatch.maps must have shape"),
        ({"features": np.zeros((2, 3, 4, 1))}, "ReplayBatch.features must have shape"),
        ({"rewards": np.zeros((2, 3, 1))}, "ReplayBatch.rewards must have shape"),
        ({"features": np.zeros((3, 3, 4))}, "map and feature batch sizes must match"),
        ({"dones": np.zeros((1, 3), bool)}, "dones batch size mismatch: expected 2, got 1"),
        ({"rewards": np.zeros((2, 2))}, "rewards timestep mismatch: expected 3, got 2"),
        ({"value_preds": np.zeros((2, 6))}, "value_preds must have length matching"),
        ({"actions": np.array([["a"] * 3] * 2)}, "ReplayBatch.actions must be numeric"),
    ],
)
def test_batch_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplayDataError, match=message):
        ReplayBatch(**_batch_arrays(**overrides))
