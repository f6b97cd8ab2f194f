"""Bucketed replay datasets: batch counts, order, seeded shuffles, streaming, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from _replay_helpers import PHASE4, capture_dirs, make_sample, reference_root
from townlet.errors import ConfigError, ReplayDataError
from townlet.policy.replay import (
    InMemoryReplayDataset,
    ManifestEntry,
    ReplayBatch,
    ReplayDataset,
    ReplayDatasetConfig,
    ReplayEventCounts,
    aggregate_metrics,
    compute_sample_metrics,
    count_batches,
    group_by_signature,
    plan_batches,
    save_replay_sample,
)


def _same(a: ReplayBatch, b: ReplayBatch) -> bool:
    fields = ("maps", "features", "actions", "old_log_probs", "value_preds", "rewards", "dones")
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in fields) and [
        dict(m) for m in a.sample_metadata
    ] == [dict(m) for m in b.sample_metadata]


@pytest.mark.parametrize("directory", capture_dirs(), ids=lambda p: p.name)
@pytest.mark.parametrize("batch_size", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_corpus_capture_batch_counts(directory: Path, batch_size: int, drop_last: bool) -> None:
    reference_root()
    manifest = json.loads((directory / "rollout_sample_manifest.json").read_text())
    n = len(manifest)  # every corpus capture has one shape bucket
    expected = n // batch_size if drop_last else math.ceil(n / batch_size)
    kwargs = {"batch_size": batch_size, "drop_last": drop_last}
    for config in (
        ReplayDatasetConfig.from_capture_dir(directory, **kwargs),
        ReplayDatasetConfig.from_manifest(directory / "rollout_sample_manifest.json", **kwargs),
    ):
        dataset = ReplayDataset(config)
        batches = list(dataset.batches())
        assert len(dataset) == len(batches) == expected
        sizes = [b.batch_size for b in batches]
        assert sum(sizes) == (expected * batch_size if drop_last else n)
        assert all(b.maps.shape[2:] == (4, 11, 11) for b in batches)


@pytest.mark.parametrize("directory", capture_dirs(), ids=lambda p: p.name)
def test_capture_dir_baseline_matches_metrics_file(directory: Path) -> None:
    flat = json.loads((directory / "rollout_sample_metrics.json").read_text())
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(directory))
    assert dataset.label == directory.name
    assert dataset.metrics_map == flat
    assert dataset.baseline_metrics == aggregate_metrics(flat.values())
    assert dataset.baseline_metrics["sample_count"] == len(flat)
    streaming = ReplayDataset(ReplayDatasetConfig.from_capture_dir(directory, streaming=True))
    assert streaming.baseline_metrics == dataset.baseline_metrics


def test_queue_conflict_baseline_values() -> None:
    reference_root()
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(PHASE4 / "queue_conflict"))
    base = dataset.baseline_metrics
    assert base["reward_sum"] == -36.0 and base["reward_sum_mean"] == -12.0
    assert base["action_total"] == 180.0 and base["action_total_mean"] == 60.0
    assert base["timesteps"] == 60.0
    assert dataset.event_counts == ReplayEventCounts()
    assert dataset.rollout_ticks == 0 and dataset.data_mode == "replay"


def test_docs_manifest_batches_all_three() -> None:
    manifest = reference_root() / "docs" / "samples" / "replay_manifest.json"
    dataset = ReplayDataset(ReplayDatasetConfig.from_manifest(manifest, batch_size=3))
    (batch,) = list(dataset.batches())
    assert batch.maps.shape == (3, 2, 4, 11, 11)
    assert batch.actions.tolist() == [[1, 0], [2, 1], [0, 0]]
    assert batch.metadata["action_dim"] == 3
    assert dataset.label == "replay_manifest"
    assert dataset.baseline_metrics == {}  # these sidecars carry no metrics


def _mixed_dir(tmp_path: Path, lengths: list[int]) -> Path:
    names = []
    for i, t in enumerate(lengths):
        save_replay_sample(make_sample(t, seed=i), tmp_path / f"s{i}.npz")
        names.append(f"s{i}.npz")
    (tmp_path / "m.json").write_text(json.dumps(names))
    return tmp_path / "m.json"


def test_mixed_lengths_bucket_shortest_first(tmp_path: Path) -> None:
    manifest = _mixed_dir(tmp_path, [5, 3, 5, 3, 5])
    dataset = ReplayDataset(ReplayDatasetConfig.from_manifest(manifest, batch_size=2))
    assert dataset.buckets == ((1, 3), (0, 2, 4))
    assert len(dataset) == 3
    assert dataset.batch_plan() == ((1, 3), (0, 2), (4,))
    assert [b.timesteps for b in dataset.batches()] == [3, 5, 5]
    assert [s[0][0] for s in dataset.bucket_signatures] == [3, 5]
    dropping = ReplayDataset(
        ReplayDatasetConfig.from_manifest(manifest, batch_size=2, drop_last=True)
    )
    assert len(dropping) == 2 and dropping.batch_plan() == ((1, 3), (0, 2))


def test_seeded_shuffle_is_deterministic_per_epoch(tmp_path: Path) -> None:
    manifest = _mixed_dir(tmp_path, [5, 3, 5, 3, 5, 5, 5])

    def make(seed: int) -> ReplayDataset:
        return ReplayDataset(ReplayDatasetConfig.from_manifest(manifest, shuffle=True, seed=seed))

    first, second = make(7), make(7)
    plans = [first.batch_plan(e) for e in range(6)]
    assert plans == [second.batch_plan(e) for e in range(6)]
    assert len(set(plans)) > 1  # reshuffled across epochs
    assert any(make(8).batch_plan(e) != plans[e] for e in range(6))
    for plan in plans:  # shuffles stay inside buckets, short bucket first
        flat = [i for chunk in plan for i in chunk]
        assert sorted(flat[:2]) == [1, 3] and sorted(flat[2:]) == [0, 2, 4, 5, 6]
    # iterating the dataset walks epochs 0, 1, … ; batches(e) replays any epoch
    iterated = [[b.actions.tolist() for b in first] for _ in range(3)]
    assert iterated == [[b.actions.tolist() for b in second.batches(e)] for e in range(3)]
    unshuffled = ReplayDataset(ReplayDatasetConfig.from_manifest(manifest))
    assert (
        unshuffled.batch_plan(0)
        == unshuffled.batch_plan(5)
        == tuple((i,) for i in (1, 3, 0, 2, 4, 5, 6))
    )


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_streaming_yields_the_same_batches(tmp_path: Path, shuffle: bool, batch_size: int) -> None:
    manifest = _mixed_dir(tmp_path, [4, 2, 4, 4, 2])
    kwargs = {"batch_size": batch_size, "shuffle": shuffle, "seed": 3}
    eager = ReplayDataset(ReplayDatasetConfig.from_manifest(manifest, **kwargs))
    lazy = ReplayDataset(ReplayDatasetConfig.from_manifest(manifest, streaming=True, **kwargs))
    assert len(eager) == len(lazy)
    for epoch in range(2):
        pairs = list(zip(eager.batches(epoch), lazy.batches(epoch), strict=True))
        assert all(_same(a, b) for a, b in pairs)


def test_streaming_reads_no_arrays_up_front(tmp_path: Path) -> None:
    manifest = _mixed_dir(tmp_path, [3, 3])
    # Corrupt values (not headers) of one file: streaming construction still succeeds …
    with np.load(tmp_path / "s1.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["rewards"] = np.full(3, np.nan, np.float32)
    with (tmp_path / "s1.npz").open("wb") as fh:
        np.savez(fh, **arrays)
    lazy = ReplayDataset(ReplayDatasetConfig.from_manifest(manifest, streaming=True))
    assert lazy._samples is None
    batches = lazy.batches()
    next(batches)
    with pytest.raises(ReplayDataError, match=r"s1\.npz.*rewards contains 3 NaN"):
        next(batches)  # … and the bad file is reported when its batch is loaded
    with pytest.raises(ReplayDataError, match=r"s1\.npz"):
        ReplayDataset(ReplayDatasetConfig.from_manifest(manifest))  # eager: at construction


def test_metrics_map_fills_missing_sidecar_metrics(tmp_path: Path) -> None:
    save_replay_sample(make_sample(), tmp_path / "a.npz")
    config = ReplayDatasetConfig(
        entries=[(tmp_path / "a.npz", None)], metrics_map={"a.npz": {"reward_sum": 2.0}}
    )
    dataset = ReplayDataset(config)
    assert dataset.samples[0].metadata["metrics"] == {"reward_sum": 2.0}
    (batch,) = list(dataset.batches())
    assert batch.metadata["metrics"] == [{"reward_sum": 2.0}]
    assert dataset.baseline_metrics == {
        "sample_count": 1.0,
        "reward_sum": 2.0,
        "reward_sum_mean": 2.0,
    }


def test_sidecar_metrics_feed_baseline_without_map(tmp_path: Path) -> None:
    sample = make_sample()
    with_metrics = make_sample(metadata={"metrics": compute_sample_metrics(sample)})
    save_replay_sample(with_metrics, tmp_path / "a.npz")
    for streaming in (False, True):
        dataset = ReplayDataset(
            ReplayDatasetConfig(entries=[tmp_path / "a.npz"], streaming=streaming)
        )
        assert dataset.baseline_metrics["timesteps"] == 3.0


def test_config_validation(tmp_path: Path) -> None:
    entry = ManifestEntry(sample=tmp_path / "a.npz")
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        ReplayDatasetConfig(entries=[entry], batch_size=0)
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        ReplayDatasetConfig(entries=[entry], seed=-1)
    with pytest.raises(ConfigError, match="entries must not be empty"):
        ReplayDatasetConfig(entries=[])
    with pytest.raises(ReplayDataError, match=r"has no rollout_sample_manifest\.json"):
        ReplayDatasetConfig.from_capture_dir(tmp_path)


def test_in_memory_dataset() -> None:
    samples = [make_sample(4, seed=1), make_sample(2, seed=2), make_sample(4, seed=3)]
    counts = ReplayEventCounts(queue_conflict_events=2, queue_conflict_intensity_sum=1.5)
    dataset = InMemoryReplayDataset(
        samples, batch_size=2, rollout_ticks=4, label="rollout_buffer", event_counts=counts
    )
    assert len(dataset) == 2 and dataset.num_samples == 3
    assert dataset.batch_plan() == ((1,), (0, 2))
    batches = list(dataset)
    assert [b.batch_size for b in batches] == [1, 2]
    np.testing.assert_array_equal(batches[1].actions[1], samples[2].actions)
    assert dataset.rollout_ticks == 4 and dataset.data_mode == "rollout"
    assert dataset.event_counts.queue_conflict_events == 2
    assert dataset.baseline_metrics == {}
    with pytest.raises(ReplayDataError, match="requires samples"):
        InMemoryReplayDataset([])
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        InMemoryReplayDataset(samples, batch_size=0)


def test_in_memory_baseline_from_sample_metrics() -> None:
    plain = make_sample()
    sample = make_sample(metadata={"metrics": compute_sample_metrics(plain)})
    dataset = InMemoryReplayDataset([sample, sample])
    assert dataset.baseline_metrics["sample_count"] == 2.0
    assert dataset.baseline_metrics["action_total"] == 6.0


def test_bucketing_helpers_by_hand() -> None:
    a, b = ((1,), (2,), ()), ((2,), (2,), ())
    assert group_by_signature([b, a, b, a, b]) == ((1, 3), (0, 2, 4))
    buckets = ((1, 3), (0, 2, 4))
    assert count_batches(buckets, 2, drop_last=False) == 3
    assert count_batches(buckets, 2, drop_last=True) == 2
    assert count_batches(buckets, 4, drop_last=True) == 0
    assert plan_batches(buckets, batch_size=4) == ((1, 3), (0, 2, 4))
    shuffled = plan_batches(buckets, batch_size=5, shuffle=True, seed=1, epoch=2)
    assert sorted(shuffled[0]) == [1, 3] and sorted(shuffled[1]) == [0, 2, 4]
    assert shuffled == plan_batches(buckets, batch_size=5, shuffle=True, seed=1, epoch=2)
    with pytest.raises(ConfigError):
        count_batches(buckets, 0, drop_last=False)
