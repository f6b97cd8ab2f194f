"""``batch_sample_metrics`` equals ``compute_sample_metrics`` exactly (values bit for bit and
key order), on synthetic arrays chosen to expose any change of summation order, and on
captures."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.policy.replay import ReplaySample, compute_sample_metrics
from townlet.policy.rollout import SourceInfo, capture_frames
from townlet.policy.rollout.batch_metrics import batch_sample_metrics
from townlet.policy.rollout.frames import sample_metadata
from townlet.world import ACTION_NAMES, FEATURE_NAMES, WorldConfig


def _info(n: int, action_names: tuple[str, ...] | None, features: tuple[str, ...]) -> SourceInfo:
    return SourceInfo(
        name="test",
        agent_ids=tuple(f"a{i}" for i in range(n)),
        action_dim=len(ACTION_NAMES),
        feature_names=features,
        action_names=action_names,
    )


def _reference(info: SourceInfo, arrays: dict[str, np.ndarray], i: int) -> dict[str, float]:
    ticks = arrays["actions"].shape[1]
    sample = ReplaySample(
        features=arrays["features"][i],
        actions=arrays["actions"][i],
        old_log_probs=arrays["log_probs"][i],
        value_preds=arrays["values"][i],
        rewards=arrays["rewards"][i],
        dones=np.zeros(ticks, np.bool_),
        metadata=sample_metadata(info, i, ticks, {}),
    )
    return compute_sample_metrics(sample)


@pytest.mark.parametrize("ticks", [1, 7, 8, 129, 1000, 9000])
@pytest.mark.parametrize("named", [True, False])
def test_synthetic_arrays_match_exactly(ticks: int, named: bool) -> None:
    rng = np.random.default_rng(ticks)
    n = 5
    scale = np.float32(10.0) ** rng.integers(-6, 7, size=(n, ticks)).astype(np.float32)
    arrays = {
        "features": (rng.standard_normal((n, ticks, len(FEATURE_NAMES))) * 1e3).astype(np.float32),
        "actions": rng.integers(0, len(ACTION_NAMES) - 2, size=(n, ticks)).astype(np.int64),
        "log_probs": (-rng.random((n, ticks)) * scale).astype(np.float32),
        "values": rng.standard_normal((n, ticks + 1)).astype(np.float32),
        "rewards": (rng.standard_normal((n, ticks)) * scale).astype(np.float32),
    }
    arrays["actions"][0] = 3  # one agent always takes the same action: zero entropy
    info = _info(n, ACTION_NAMES if named else None, FEATURE_NAMES)
    batched = batch_sample_metrics(
        info,
        arrays["features"],
        arrays["actions"],
        arrays["log_probs"],
        arrays["values"],
        arrays["rewards"],
    )
    for i in range(n):
        expected = _reference(info, arrays, i)
        assert list(batched[i]) == list(expected)
        assert batched[i] == expected
    assert batched[0]["action_entropy"] == 0.0 and batched[0]["action_nonzero"] == 1.0


def test_features_without_conflict_columns() -> None:
    info = _info(2, None, ("x", "lateness_counter"))
    rng = np.random.default_rng(0)
    arrays = {
        "features": rng.random((2, 30, 2)).astype(np.float32),
        "actions": rng.integers(0, 4, size=(2, 30)).astype(np.int64),
        "log_probs": rng.random((2, 30)).astype(np.float32),
        "values": rng.random((2, 31)).astype(np.float32),
        "rewards": rng.random((2, 30)).astype(np.float32),
    }
    batched = batch_sample_metrics(
        info, *(arrays[k] for k in ("features", "actions", "log_probs", "values", "rewards"))
    )
    for i in range(2):
        assert batched[i] == _reference(info, arrays, i)
        assert "lateness_mean" in batched[i] and "rivalry_max_mean" not in batched[i]


@pytest.mark.parametrize("policy", ["scripted", "random"])
def test_capture_metrics_match_per_sample(policy: str) -> None:
    frames = capture_frames(WorldConfig(num_agents=5, hunger_decay=0.05), policy, 60, seed=4)
    recorder = frames.recorder
    batched = batch_sample_metrics(
        recorder.info,
        recorder.features,
        recorder.actions,
        recorder.log_probs,
        recorder.values,
        recorder.rewards,
    )
    for index, arrays in recorder.iter_agent_arrays():
        meta = sample_metadata(recorder.info, index, 60, {})
        expected = compute_sample_metrics(ReplaySample(**arrays, metadata=meta))
        assert list(batched[index]) == list(expected) and batched[index] == expected
