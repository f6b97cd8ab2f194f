"""Reading and writing replay samples: the corpus, round trips and every bad-input case."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _replay_helpers import FEATURE_NAMES, corpus_samples, make_sample, reference_root
from townlet.errors import ReplayDataError
from townlet.policy.replay import (
    NPZ_KEYS,
    ReplaySample,
    load_replay_sample,
    read_sample_header,
    sample_signature,
    save_replay_sample,
)

_DTYPES = {
    "map": np.float32,
    "features": np.float32,
    "actions": np.int64,
    "old_log_probs": np.float32,
    "value_preds": np.float32,
    "rewards": np.float32,
    "dones": np.bool_,
}


@pytest.mark.parametrize("path", corpus_samples(), ids=lambda p: p.stem)
def test_every_corpus_sample_loads_unchanged(path: Path) -> None:
    reference_root()
    sample = load_replay_sample(path)
    raw = np.load(path, allow_pickle=False)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    for key in NPZ_KEYS:
        loaded = getattr(sample, key)
        assert loaded.dtype == _DTYPES[key]
        np.testing.assert_array_equal(loaded, raw[key])
    assert dict(sample.metadata) == sidecar  # every corpus sidecar already has the defaults
    assert sample.timesteps == sidecar["timesteps"]
    assert sample.has_bootstrap_value
    assert sample.action_dim == sidecar["action_dim"]
    header = read_sample_header(path)
    assert header.signature == sample_signature(sample)


def test_corpus_has_all_expected_samples() -> None:
    reference_root()
    names = {p.name for p in corpus_samples()}
    assert len(names) == 16  # with tests/golden/ppo_social/social_sample.npz
    assert {"idle_alice.npz", "rollout_sample_anna_001.npz"} <= names


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_is_exact(tmp_path: Path, compress: bool) -> None:
    sample = make_sample(5, metadata={"agent_id": "anna", "nested": {"a": [1, 2]}})
    npz, meta = save_replay_sample(sample, tmp_path / "sub" / "s.npz", compress=compress)
    assert meta == tmp_path / "sub" / "s.json"
    with zipfile.ZipFile(npz) as archive:
        assert [i.filename for i in archive.infolist()] == [f"{k}.npy" for k in NPZ_KEYS]
        kinds = {i.compress_type for i in archive.infolist()}
        assert kinds == ({zipfile.ZIP_DEFLATED} if compress else {zipfile.ZIP_STORED})
    loaded = load_replay_sample(npz)
    for key in NPZ_KEYS:
        original, back = getattr(sample, key), getattr(loaded, key)
        assert back.dtype == original.dtype
        assert back.tobytes() == original.tobytes()
    assert dict(loaded.metadata) == dict(sample.metadata)
    assert json.loads(meta.read_text()) == dict(sample.metadata)
    assert sorted(p.name for p in npz.parent.iterdir()) == ["s.json", "s.npz"]  # no temp left


def test_corpus_sample_resaves_identically(tmp_path: Path) -> None:
    source = reference_root() / "docs" / "samples" / "observation_hybrid_sample_base.npz"
    sample = load_replay_sample(source)
    npz, meta = save_replay_sample(sample, tmp_path / "copy.npz", compress=False)
    assert json.loads(meta.read_text()) == json.loads(source.with_suffix(".json").read_text())
    with np.load(npz) as ours, np.load(source) as theirs:
        assert list(ours.files) == list(theirs.files)
        for key in NPZ_KEYS:
            assert ours[key].tobytes() == theirs[key].tobytes()


def test_features_only_sample_round_trips(tmp_path: Path) -> None:
    sample = ReplaySample(
        features=np.ones((2, 3), np.float32),
        actions=np.array([0, 1]),
        old_log_probs=np.zeros(2, np.float32),
        value_preds=np.zeros(3, np.float32),
        rewards=np.zeros(2, np.float32),
        dones=np.array([False, True]),
    )
    npz, _ = save_replay_sample(sample, tmp_path / "gym.npz")
    loaded = load_replay_sample(npz, require_conflict_features=False)
    assert loaded.map.shape == (2, 0, 0, 0)
    assert not loaded.has_map


def test_npz_without_map_loads_as_features_only(tmp_path: Path) -> None:
    arrays = {k: getattr(make_sample(), k) for k in NPZ_KEYS if k != "map"}
    np.savez(tmp_path / "nomap.npz", **arrays)
    (tmp_path / "nomap.json").write_text(json.dumps({"feature_names": FEATURE_NAMES}))
    sample = load_replay_sample(tmp_path / "nomap.npz")
    assert sample.map.shape == (3, 0, 0, 0)
    assert read_sample_header(tmp_path / "nomap.npz").signature == sample_signature(sample)


def test_save_refuses_unserialisable_metadata_before_writing(tmp_path: Path) -> None:
    sample = make_sample(metadata={"bad": object()})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        save_replay_sample(sample, tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


def test_numpy_scalars_in_metadata_are_saved_as_json(tmp_path: Path) -> None:
    sample = make_sample(metadata={"score": np.float32(0.5), "ids": np.arange(2)})
    _, meta = save_replay_sample(sample, tmp_path / "x.npz")
    payload = json.loads(meta.read_text())
    assert payload["score"] == 0.5 and payload["ids"] == [0, 1]


# ---- bad inputs: each raises ReplayDataError naming the file and the field ----------------


def _write_good(tmp_path: Path, name: str = "s") -> tuple[Path, Path]:
    return save_replay_sample(make_sample(), tmp_path / f"{name}.npz")


def _rewrite_npz(path: Path, **changes: Any) -> None:
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    with path.open("wb") as fh:
        np.savez(fh, **arrays)


def _expect(path: Path, *fragments: str, meta: Path | None = None) -> None:
    with pytest.raises(ReplayDataError) as exc:
        load_replay_sample(path, meta)
    for fragment in fragments:
        assert fragment in str(exc.value)


def test_missing_sample_file(tmp_path: Path) -> None:
    _expect(tmp_path / "absent.npz", "absent.npz", "not found")


def test_truncated_npz(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    _expect(npz, "s.npz", "unreadable")


def test_non_zip_file(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    npz.write_bytes(b"this is not a zip archive at all" * 4)
    _expect(npz, "s.npz", "unreadable")


def test_plain_npy_file(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    with npz.open("wb") as fh:
        np.save(fh, np.zeros(3))
    _expect(npz, "s.npz", "not an npz archive")


def test_corrupt_member_data(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    data = bytearray(npz.read_bytes())
    start = data.index(b"rewards.npy") + 200  # inside the deflated payload of 'rewards'
    data[start : start + 8] = b"\x00" * 8
    npz.write_bytes(bytes(data))
    with pytest.raises(ReplayDataError, match=r"s\.npz array '.*' unreadable"):
        load_replay_sample(npz)


def test_missing_features_array(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    _rewrite_npz(npz, features=None)
    _expect(npz, "s.npz", "missing required arrays", "features")


def test_missing_training_arrays_listed_in_field_order(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    _rewrite_npz(npz, dones=None, actions=None, value_preds=None)
    _expect(npz, "s.npz", "missing training array(s): ['actions', 'dones', 'value_preds']")


def test_object_array_is_refused_not_unpickled(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    _rewrite_npz(npz, rewards=np.array([{"x": 1}, None, 2], dtype=object))
    _expect(npz, "s.npz", "'rewards'", "allow_pickle")
    with pytest.raises(ReplayDataError, match="rewards"):
        read_sample_header(npz)


def test_bad_array_values_name_file_and_field(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    _rewrite_npz(npz, features=np.full((3, 4), np.nan, np.float32))
    _expect(npz, "s.npz", "ReplaySample.features contains 12 NaN/Inf")


def test_mismatched_lengths_name_file_and_field(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    _rewrite_npz(npz, rewards=np.zeros(5, np.float32))
    _expect(npz, "s.npz", "for rewards")
    with pytest.raises(ReplayDataError, match=r"s\.npz.*for rewards"):
        read_sample_header(npz)


def test_missing_sidecar(tmp_path: Path) -> None:
    npz, meta = _write_good(tmp_path)
    meta.unlink()
    _expect(npz, "s.json", "not found")


def test_explicit_meta_does_not_fall_back(tmp_path: Path) -> None:
    npz, _ = _write_good(tmp_path)
    _expect(npz, "other.json", "not found", meta=tmp_path / "other.json")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("{not json", ["s.json", "not valid JSON", "line 1"]),
        ("[1, 2]", ["s.json", "JSON object"]),
        ('{"timesteps": 3}', ["s.json", "missing feature_names list"]),
        ('{"feature_names": "abc"}', ["s.json", "missing feature_names list"]),
        (
            '{"feature_names": ["need_hunger", "rivalry_max", "x", "y"]}',
            ["s.json", "missing conflict feature(s): ['rivalry_avoid_count']"],
        ),
        (
            json.dumps({"feature_names": FEATURE_NAMES, "timesteps": 9}),
            ["s.npz", "metadata['timesteps'] is 9"],
        ),
        (
            json.dumps({"feature_names": [*FEATURE_NAMES, "rivalry_extra"]}),
            ["s.npz", "has 5 names but features have 4 columns"],
        ),
    ],
)
def test_malformed_sidecar(tmp_path: Path, text: str, fragments: list[str]) -> None:
    npz, meta = _write_good(tmp_path)
    meta.write_text(text)
    _expect(npz, *fragments)


def test_generic_data_needs_no_sidecar(tmp_path: Path) -> None:
    npz, meta = _write_good(tmp_path)
    meta.unlink()
    sample = load_replay_sample(npz, require_conflict_features=False)
    assert sample.feature_names is None
    assert sample.metadata["timesteps"] == 3
