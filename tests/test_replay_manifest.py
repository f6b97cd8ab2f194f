"""Replay manifests: the three layouts, JSON and YAML, path resolution, curation, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from _replay_helpers import capture_dirs, make_sample, reference_root
from townlet.errors import ReplayDataError
from townlet.policy.replay import (
    ManifestEntry,
    read_capture_metrics,
    read_manifest,
    resolve_manifest_path,
    save_replay_sample,
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for name in ("a", "b", "c"):
        save_replay_sample(make_sample(), data / f"{name}.npz")
    return data


def test_list_of_strings(data_dir: Path) -> None:
    (data_dir / "m.json").write_text(json.dumps(["a.npz", "b.npz"]))
    entries = read_manifest(data_dir / "m.json")
    assert entries == (
        ManifestEntry(sample=data_dir / "a.npz", meta=data_dir / "a.json"),
        ManifestEntry(sample=data_dir / "b.npz", meta=data_dir / "b.json"),
    )


def test_samples_mapping_with_metadata(data_dir: Path) -> None:
    payload = {"metadata": {"ticks": 3}, "samples": [{"sample": "a.npz", "agent_id": "x"}]}
    (data_dir / "m.json").write_text(json.dumps(payload))
    (entry,) = read_manifest(data_dir / "m.json")
    assert entry.sample == data_dir / "a.npz"
    assert entry.meta is None  # the loader falls back to the sibling .json


def test_curated_list_skips_rejected_entries(data_dir: Path) -> None:
    payload = [
        {"sample": "a.npz", "meta": "a.json", "metrics": {"timesteps": 3}, "accepted": True},
        {"sample": "b.npz", "meta": "b.json", "accepted": False},
        {"sample": "c.npz", "meta": "c.json"},
    ]
    (data_dir / "m.json").write_text(json.dumps(payload))
    entries = read_manifest(data_dir / "m.json")
    assert [e.sample.name for e in entries] == ["a.npz", "c.npz"]
    assert entries[0].metrics == {"timesteps": 3}
    everything = read_manifest(data_dir / "m.json", include_rejected=True)
    assert [e.accepted for e in everything] == [True, False, True]


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".txt"])
def test_yaml_manifest(data_dir: Path, suffix: str) -> None:
    (data_dir / f"m{suffix}").write_text(
        "samples:\n  - sample: a.npz\n    meta: a.json\n  - b.npz\n"
    )
    entries = read_manifest(data_dir / f"m{suffix}")
    assert [e.sample.name for e in entries] == ["a.npz", "b.npz"]
    assert entries[0].meta == data_dir / "a.json"


def test_jsonl_suffix_is_one_json_document(data_dir: Path) -> None:
    (data_dir / "m.jsonl").write_text('["a.npz"]')
    assert len(read_manifest(data_dir / "m.jsonl")) == 1


def test_resolution_order_manifest_dir_root_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root, cwd = (tmp_path / d for d in ("base", "root", "cwd"))
    for d in (base, root, cwd):
        (d / "x").mkdir(parents=True)
    for d in (root, cwd):
        (d / "x" / "s.npz").write_bytes(b"")
    monkeypatch.chdir(cwd)
    assert resolve_manifest_path("x/s.npz", base, root) == (root / "x" / "s.npz").resolve()
    assert resolve_manifest_path("x/s.npz", base) == (cwd / "x" / "s.npz").resolve()
    (base / "x" / "s.npz").write_bytes(b"")
    assert resolve_manifest_path("x/s.npz", base, root) == (base / "x" / "s.npz").resolve()
    assert resolve_manifest_path("x/none.npz", base, root) == (base / "x" / "none.npz").resolve()
    absolute = tmp_path / "abs.npz"
    assert resolve_manifest_path(str(absolute), base, root) == absolute


def test_relative_manifest_path_entries_are_absolute(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (data_dir / "m.json").write_text('["a.npz"]')
    monkeypatch.chdir(data_dir.parent)
    (entry,) = read_manifest(Path("data") / "m.json")
    assert entry.sample.is_absolute() and entry.sample == data_dir / "a.npz"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[]", "contains no entries"),
        ('{"samples": []}', "contains no entries"),
        ('{"items": []}', "payload missing 'samples' list"),
        ('"a.npz"', "must be a list or mapping with 'samples'"),
        ("[3]", "entry 0: manifest entry must be string or mapping"),
        ('["a.npz", {"meta": "a.json"}]', "entry 1: manifest entry missing 'sample' field"),
        ('[{"sample": "a.npz", "meta": 3}]', "entry 0: 'meta' must be a path string"),
        ('[{"sample": "a.npz", "accepted": "yes"}]', "entry 0: 'accepted' must be true or false"),
        ('[{"sample": "a.npz", "metrics": [1]}]', "entry 0: 'metrics' must be a mapping"),
        ('[{"sample": "a.npz", "accepted": false}]', "has no accepted entries"),
        ("[{", "not valid JSON (line 1"),
    ],
)
def test_bad_manifests_name_the_file(data_dir: Path, text: str, fragment: str) -> None:
    path = data_dir / "bad.json"
    path.write_text(text)
    with pytest.raises(ReplayDataError) as exc:
        read_manifest(path)
    assert "bad.json" in str(exc.value) and fragment in str(exc.value)


def test_bad_yaml_and_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("samples: [unclosed\n")
    with pytest.raises(ReplayDataError, match=r"bad\.yaml is not valid YAML"):
        read_manifest(tmp_path / "bad.yaml")
    with pytest.raises(ReplayDataError, match=r"absent\.json not found"):
        read_manifest(tmp_path / "absent.json")


def test_corpus_manifests_parse() -> None:
    root = reference_root()
    docs = read_manifest(root / "docs" / "samples" / "replay_manifest.json")
    assert [e.sample.name for e in docs] == [
        "observation_hybrid_sample_base.npz",
        "observation_hybrid_sample_conflict_high.npz",
        "observation_hybrid_sample_conflict_low.npz",
    ]
    assert all(e.sample.is_file() and e.meta is None for e in docs)
    bc = read_manifest(root / "data" / "bc_datasets" / "manifests" / "idle_v1.json", root=root)
    assert [e.sample.name for e in bc] == ["idle_alice.npz", "idle_bob.npz"]
    assert all(e.sample.is_file() and e.meta is not None and e.meta.is_file() for e in bc)
    assert bc[0].metrics is not None and bc[0].metrics["done_count"] == 174
    for directory in capture_dirs():
        entries = read_manifest(directory / "rollout_sample_manifest.json")
        assert entries and all(e.sample.is_file() and e.meta for e in entries)


def test_capture_metrics_flat_and_samples_forms(tmp_path: Path) -> None:
    metrics = {"a.npz": {"reward_sum": -1.0, "timesteps": 3}}
    (tmp_path / "flat.json").write_text(json.dumps(metrics))
    (tmp_path / "wrapped.json").write_text(json.dumps({"metadata": {}, "samples": metrics}))
    expected = {"a.npz": {"reward_sum": -1.0, "timesteps": 3.0}}
    assert read_capture_metrics(tmp_path / "flat.json") == expected
    assert read_capture_metrics(tmp_path / "wrapped.json") == expected
    assert read_capture_metrics(tmp_path / "absent.json") == {}
    (tmp_path / "bad.json").write_text('{"a.npz": 3}')
    with pytest.raises(ReplayDataError, match=r"bad\.json entry 'a\.npz' must be a mapping"):
        read_capture_metrics(tmp_path / "bad.json")


def test_home_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_manifest_path("~/x.npz", Path("/nowhere")) == Path(
        os.path.join(tmp_path, "x.npz")
    )
