"""BC manifests and frame flattening."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _replay_helpers import make_sample, reference_root
from townlet.errors import ReplayDataError
from townlet.policy.replay import flatten_bc_frames, load_bc_samples, save_replay_sample


def test_idle_v1_loads_with_repository_root() -> None:
    root = reference_root()
    manifest = root / "data" / "bc_datasets" / "manifests" / "idle_v1.json"
    samples = load_bc_samples(manifest, root=root)
    assert [s.metadata["agent_id"] for s in samples] == ["alice", "bob"]
    assert [int(s.dones.sum()) for s in samples] == [174, 144]  # as the manifest's metrics
    maps, features, actions = flatten_bc_frames(samples)
    assert maps.shape == (400, 4, 11, 11) and maps.dtype == np.float32
    assert features.shape == (400, 68) and features.dtype == np.float32
    assert actions.shape == (400,) and actions.dtype == np.int64 and not actions.any()
    np.testing.assert_array_equal(maps[200], samples[1].map[0])


def test_idle_v1_without_root_names_the_missing_file(monkeypatch: pytest.MonkeyPatch) -> None:
    root = reference_root()
    monkeypatch.chdir(root.parent)  # the repo-relative paths do not resolve from here
    with pytest.raises(ReplayDataError, match=r"idle_alice\.npz not found"):
        load_bc_samples(root / "data" / "bc_datasets" / "manifests" / "idle_v1.json")


def test_rejected_entries_are_skipped(tmp_path: Path) -> None:
    for name in ("a", "b"):
        save_replay_sample(make_sample(seed=ord(name)), tmp_path / f"{name}.npz")
    entries = [
        {"sample": "a.npz", "meta": "a.json", "accepted": False},
        {"sample": "b.npz", "meta": "b.json", "accepted": True},
    ]
    (tmp_path / "m.json").write_text(json.dumps(entries))
    assert len(load_bc_samples(tmp_path / "m.json")) == 1
    assert len(load_bc_samples(tmp_path / "m.json", include_rejected=True)) == 2


def test_flatten_errors() -> None:
    with pytest.raises(ReplayDataError, match="at least one frame"):
        flatten_bc_frames([])
    with pytest.raises(ReplayDataError, match="BC sample 1 has map"):
        flatten_bc_frames([make_sample(), make_sample(map_shape=(1, 3, 3))])


def test_flatten_mixed_lengths_concatenates() -> None:
    maps, features, actions = flatten_bc_frames([make_sample(2), make_sample(5)])
    assert maps.shape == (7, 2, 3, 3) and features.shape == (7, 4) and actions.shape == (7,)
