"""Files the reference accepts: short ``feature_names`` lists, and rollout buffers of samples
that carry no ``metrics`` (spec reference-replay_rollout §5, §9.1, §11)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from _replay_helpers import make_sample
from townlet.errors import ReplayDataError, ShortFeatureNamesWarning
from townlet.policy.replay import (
    ReplaySample,
    compute_sample_metrics,
    load_replay_sample,
    read_sample_header,
    save_replay_sample,
)
from townlet.policy.rollout import RolloutBuffer, build_rollout_dataset, save_rollout

CONFLICT = ["rivalry_max", "rivalry_avoid_count"]


def _short_sample() -> ReplaySample:
    """The reference fixture's shape: 4 feature columns, 2 names."""
    features = np.zeros((3, 4), np.float32)
    features[:, 0] = [0.0, 0.5, 1.0]
    features[:, 3] = 9.0
    return ReplaySample(
        features=features,
        actions=np.array([0, 1, 1]),
        old_log_probs=np.zeros(3, np.float32),
        value_preds=np.zeros(4, np.float32),
        rewards=np.ones(3, np.float32),
        dones=np.zeros(3, bool),
        metadata={"feature_names": CONFLICT},
    )


def test_short_feature_names_load_with_one_warning_and_save_back_unchanged(
    tmp_path: Path,
) -> None:
    npz, meta = save_replay_sample(_short_sample(), tmp_path / "short.npz")
    written = meta.read_text()
    with pytest.warns(ShortFeatureNamesWarning) as record:
        sample = load_replay_sample(npz)
    assert len(record) == 1
    message = str(record[0].message)
    assert str(npz) in message
    assert "2 names for 4 feature columns; columns 2..3 are unnamed" in message
    assert sample.feature_names == tuple(CONFLICT)
    assert sample.conflict_stats() == {"rivalry_max": 0.5, "rivalry_avoid_count": 0.0}
    _, meta2 = save_replay_sample(sample, tmp_path / "again.npz")
    assert json.loads(meta2.read_text())["feature_names"] == CONFLICT
    assert meta2.read_text() == written


def test_short_feature_names_header_warns_once(tmp_path: Path) -> None:
    npz, _ = save_replay_sample(_short_sample(), tmp_path / "short.npz")
    with pytest.warns(ShortFeatureNamesWarning) as record:
        header = read_sample_header(npz)
    assert len(record) == 1
    assert header.shapes["features"] == (3, 4)


def test_zero_names_for_one_column_is_accepted_in_memory() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample = ReplaySample(
            features=np.ones((2, 1), np.float32),
            actions=np.array([0, 0]),
            old_log_probs=np.zeros(2, np.float32),
            value_preds=np.zeros(3, np.float32),
            rewards=np.zeros(2, np.float32),
            dones=np.zeros(2, bool),
            metadata={"feature_names": []},
        )
    assert sample.feature_names == ()
    assert "rivalry_max_mean" not in compute_sample_metrics(sample)


def test_full_feature_names_do_not_warn(tmp_path: Path) -> None:
    npz, _ = save_replay_sample(make_sample(), tmp_path / "full.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_replay_sample(npz)
        read_sample_header(npz)


def test_longer_feature_names_are_still_refused() -> None:
    names = [*CONFLICT, "a", "b", "c"]
    with pytest.raises(ReplayDataError, match="has 5 names but features have 4 columns"):
        make_sample(metadata={"feature_names": names})


def _buffer(samples: list[ReplaySample]) -> RolloutBuffer:
    return RolloutBuffer(samples=samples, rollout_ticks=3, source="test", policy="random")


def _bare(seed: int, agent: str) -> ReplaySample:
    return make_sample(3, seed=seed, metadata={"agent_id": agent})


def test_buffer_computes_missing_metrics_for_baseline_dataset_and_save(tmp_path: Path) -> None:
    bare = [_bare(1, "anna"), _bare(2, "bob")]
    assert all("metrics" not in s.metadata for s in bare)
    buffer = _buffer(bare)
    expected = [compute_sample_metrics(s) for s in bare]
    assert [dict(s.metadata["metrics"]) for s in buffer.samples] == expected
    assert buffer.baseline_metrics["sample_count"] == 2.0
    assert buffer.baseline_metrics["reward_sum"] == pytest.approx(
        expected[0]["reward_sum"] + expected[1]["reward_sum"]
    )
    assert build_rollout_dataset(buffer).baseline_metrics == buffer.baseline_metrics
    out = save_rollout(buffer, tmp_path / "cap")
    flat = json.loads((out / "rollout_sample_metrics.json").read_text())
    assert flat == {
        "rollout_sample_anna_001.npz": expected[0],
        "rollout_sample_bob_002.npz": expected[1],
    }
    sidecar = json.loads((out / "rollout_sample_anna_001.json").read_text())
    assert sidecar["metrics"] == expected[0]


def test_buffer_keeps_metrics_a_sample_already_has() -> None:
    given = make_sample(metadata={"agent_id": "anna", "metrics": {"reward_sum": 42.0}})
    buffer = _buffer([given])
    assert buffer.samples[0] is given
    assert buffer.baseline_metrics["reward_sum"] == 42.0


def test_train_ppo_on_a_buffer_of_bare_samples_reports_the_baseline() -> None:
    pytest.importorskip("torch")
    from townlet.policy.training.strategies.ppo import train_ppo

    buffer = _buffer([_bare(1, "anna"), _bare(2, "bob")])
    record = train_ppo(build_rollout_dataset(buffer, batch_size=2), epochs=1).result
    assert record.baseline_sample_count == 2.0
    assert record.baseline_reward_sum == pytest.approx(buffer.baseline_metrics["reward_sum"])
