"""Saving a capture: the threaded writer's files equal the sequential path's, deflate levels,
replacing an older capture without mixing, leftovers of dead runs, the per-target lock, and
errors midway (nothing half-written, the old capture intact)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import townlet.policy.rollout.commit as commit
import townlet.policy.rollout.save as save
import townlet.policy.rollout.writer_pool as writer_pool
from townlet.errors import CaptureWriteError, RolloutError
from townlet.policy.replay import (
    NPZ_KEYS,
    ReplayDataset,
    ReplayDatasetConfig,
    load_replay_sample,
    save_replay_sample,
)
from townlet.policy.rollout import RolloutBuffer, capture_rollout, sample_stem, save_rollout
from townlet.world import WorldConfig, scaled_world_config


@pytest.fixture(scope="module")
def buffer() -> RolloutBuffer:
    return capture_rollout(scaled_world_config(24), "scripted", 40, seed=5)


@pytest.fixture(scope="module")
def small() -> RolloutBuffer:
    return capture_rollout(WorldConfig(num_agents=3), "scripted", 10, seed=9)


def _tree(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_threaded_files_equal_sequential_and_per_sample_files(
    buffer: RolloutBuffer, tmp_path: Path
) -> None:
    threaded = save_rollout(buffer, tmp_path / "threaded", compress_level=6, workers=4)
    sequential = save_rollout(buffer, tmp_path / "sequential", compress_level=6, workers=0)
    assert _tree(threaded) == _tree(sequential)
    # ... and equal to the one-sample writer (np.savez_compressed, numpy's default level 6).
    for number, sample in enumerate(buffer.samples, start=1):
        stem = sample_stem("rollout_sample", str(sample.metadata["agent_id"]), number)
        npz, meta = save_replay_sample(sample, tmp_path / "single" / f"{stem}.npz")
        assert npz.read_bytes() == (threaded / npz.name).read_bytes()
        assert meta.read_bytes() == (threaded / meta.name).read_bytes()
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(threaded))
    assert dataset.num_samples == 24
    for loaded, original in zip(dataset.samples, buffer.samples, strict=True):
        for key in NPZ_KEYS:
            assert getattr(loaded, key).tobytes() == getattr(original, key).tobytes()
    assert _litter(tmp_path) == []


def test_default_level_and_stored_files(buffer: RolloutBuffer, tmp_path: Path) -> None:
    fast = save_rollout(buffer, tmp_path / "default", workers=3)
    assert _tree(fast) == _tree(save_rollout(buffer, tmp_path / "seq", workers=0))
    level = save_rollout(buffer, tmp_path / "l1", compress_level=save.DEFAULT_COMPRESS_LEVEL)
    assert _tree(fast) == _tree(level)
    stored = save_rollout(buffer, tmp_path / "stored", compress=False)
    size = {p: sum(f.stat().st_size for f in p.iterdir()) for p in (fast, stored)}
    assert size[stored] > 10 * size[fast]
    sample = load_replay_sample(stored / "rollout_sample_agent_7_008.npz")
    assert sample.map.tobytes() == buffer.samples[7].map.tobytes()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"compress_level": 10}, "compress_level must be an int from 0 to 9, got 10"),
        ({"compress_level": 3, "compress": False}, "compress_level applies to compressed"),
        ({"workers": -1}, "workers must be an int from 0 to 64, got -1"),
        ({"prefix": "a/b"}, "prefix must be a non-empty file-name stem"),
    ],
)
def test_bad_settings(small: RolloutBuffer, tmp_path: Path, kwargs: Any, match: str) -> None:
    with pytest.raises(RolloutError, match=match):
        save_rollout(small, tmp_path / "x", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_replacing_a_bigger_capture_leaves_none_of_it(
    buffer: RolloutBuffer, small: RolloutBuffer, tmp_path: Path
) -> None:
    target = save_rollout(buffer, tmp_path / "cap")
    (target / "notes.txt").write_text("mine")
    save_rollout(small, target, prefix="other")
    (target / ".rollout_sample_agent_0_001.npz.k2j3.tmp").write_bytes(b"old temp")
    save_rollout(small, target)
    names = set(os.listdir(target))
    ours = {n for n in names if n.startswith("rollout_sample")}
    assert len(ours) == 2 * 3 + 2  # 3 samples, manifest, metrics: nothing of the 24
    assert (target / "notes.txt").read_text() == "mine"
    others = {n for n in names if n.startswith("other")}
    assert {n.replace("other", "rollout_sample") for n in others} == ours
    assert len(names) == 2 * len(ours) + 1
    metrics = json.loads((target / "rollout_sample_metrics.json").read_text())
    assert sorted(metrics) == [f"rollout_sample_agent_{i}_00{i + 1}.npz" for i in range(3)]
    assert _litter(tmp_path) == [] and _litter(target) == []


def test_without_atomic_exchange(
    buffer: RolloutBuffer, small: RolloutBuffer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commit, "_exchange", lambda first, second: False)
    target = save_rollout(buffer, tmp_path / "cap")
    save_rollout(small, target)
    assert len(os.listdir(target)) == 8 and _litter(tmp_path) == []


def test_leftovers_of_dead_runs_are_removed(small: RolloutBuffer, tmp_path: Path) -> None:
    target = save_rollout(small, tmp_path / "cap")
    dead = [".cap.capture-a1b2c3_d.tmp", ".cap.capture-zz9.old", ".cap.k3j4h5g6.tmp"]
    for name in dead:
        (tmp_path / name).mkdir()
        (tmp_path / name / "rollout_sample_agent_0_001.npz").write_bytes(b"half")
    (tmp_path / ".cap.capture.lock").write_text("")  # a dead run's lock file
    unrelated = [".cap.x.capture-a1b2c3.tmp", ".cap.notes.tmp", ".capx.capture-abc.tmp"]
    for name in unrelated:
        (tmp_path / name).mkdir()
    save_rollout(small, target)
    assert _litter(tmp_path) == sorted(unrelated)


def test_second_capture_into_the_same_directory_is_refused(
    small: RolloutBuffer, tmp_path: Path
) -> None:
    target = tmp_path / "cap"
    holder = textwrap.dedent(
        f"""
        import sys, time
        from townlet.policy.rollout.save import capture_target
        with capture_target({str(target)!r}):
            print("held", flush=True)
            sys.stdin.readline()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(RolloutError, match="is being written by another capture"):
            save_rollout(small, target)
        assert not target.exists()
    finally:
        proc.communicate("\n", timeout=60)
    save_rollout(small, target)  # free again once the holder is done
    assert _litter(tmp_path) == []


def _fail_on_fifth(code: int) -> Any:
    calls: list[str] = []
    real = writer_pool.write_sample_files

    def write(directory: Path, stem: str, sample: Any, level: int | None) -> None:
        calls.append(stem)
        if len(calls) == 5:
            (directory / f"{stem}.npz").write_bytes(b"half")
            raise OSError(code, os.strerror(code))
        real(directory, stem, sample, level)

    return write


@pytest.mark.parametrize("workers", [0, 3])
def test_full_disk_midway_keeps_the_old_capture(
    buffer: RolloutBuffer,
    small: RolloutBuffer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    target = save_rollout(small, tmp_path / "cap")
    before = _tree(target)
    monkeypatch.setattr(writer_pool, "write_sample_files", _fail_on_fifth(errno.ENOSPC))
    with pytest.raises(CaptureWriteError, match=r"capture not saved to .*cap: No space left"):
        save_rollout(buffer, target, workers=workers)
    assert _tree(target) == before and _litter(tmp_path) == []


def test_unwritable_location_is_an_input_error(
    small: RolloutBuffer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RolloutError, match=r"cap cannot be written: .*file is a file"):
        save_rollout(small, tmp_path / "file" / "cap")
    monkeypatch.setattr(writer_pool, "write_sample_files", _fail_on_fifth(errno.EROFS))
    with pytest.raises(RolloutError, match="cannot be written: Read-only file system"):
        save_rollout(capture_rollout(WorldConfig(num_agents=6), "random", 3), tmp_path / "c")
    assert _litter(tmp_path) == []


def test_in_place_commit_when_the_parent_cannot_take_a_sibling(
    buffer: RolloutBuffer, small: RolloutBuffer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = save_rollout(buffer, tmp_path / "mount")
    (target / "notes.txt").write_text("mine")
    monkeypatch.setattr(save, "writes_in_place", lambda target: True)
    save_rollout(small, target)
    assert len(os.listdir(target)) == 9 and (target / "notes.txt").read_text() == "mine"
    assert ReplayDataset(ReplayDatasetConfig.from_capture_dir(target)).num_samples == 3

    # Killed (here: failing) while moving files in: no manifest, so no reader takes the mix.
    real_replace, moved = os.replace, []

    def failing_replace(src: Any, dst: Any) -> None:
        moved.append(dst)
        if len(moved) == 4:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(CaptureWriteError, match="Input/output error"):
        save_rollout(buffer, target)
    assert not (target / "rollout_sample_manifest.json").exists()
    assert _litter(target) == []
    monkeypatch.setattr(os, "replace", real_replace)
    save_rollout(buffer, target)
    assert ReplayDataset(ReplayDatasetConfig.from_capture_dir(target)).num_samples == 24
    assert len(os.listdir(target)) == 24 * 2 + 3


def test_arrays_of_a_saved_capture_are_unchanged(buffer: RolloutBuffer, tmp_path: Path) -> None:
    out = save_rollout(buffer, tmp_path / "cap", workers=2)
    with np.load(out / "rollout_sample_agent_3_004.npz") as archive:
        assert archive["map"].tobytes() == buffer.samples[3].map.tobytes()
        assert archive["dones"].dtype == np.bool_ and archive["actions"].dtype == np.int64


REFERENCE_REPLAY = Path(__file__).resolve().parents[2] / "townlet-ref/src/townlet/policy/replay.py"


@pytest.mark.parametrize("level", [0, 1, 9, None])
def test_reference_loader_reads_every_level(
    small: RolloutBuffer, tmp_path: Path, level: Any
) -> None:
    if not REFERENCE_REPLAY.is_file():
        pytest.skip(f"reference checkout not found at {REFERENCE_REPLAY}")
    out = save_rollout(small, tmp_path / "cap", compress=level is not None, compress_level=level)
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        from pathlib import Path
        spec = importlib.util.spec_from_file_location("ref_replay", {str(REFERENCE_REPLAY)!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules["ref_replay"] = module
        spec.loader.exec_module(module)
        npz = Path({str(out / "rollout_sample_agent_2_003.npz")!r})
        sample = module.load_replay_sample(npz, npz.with_suffix(".json"))
        print(sample.map.shape, sample.map.sum(), sample.actions.tolist())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REFERENCE_REPLAY.parents[2])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode != 0 and "ModuleNotFoundError" in done.stderr:
        pytest.skip(f"the reference's dependencies are not installed: {done.stderr[-200:]}")
    ours = small.samples[2]
    assert done.stdout.strip() == f"{ours.map.shape} {ours.map.sum()} {ours.actions.tolist()}"


def test_a_linked_directory_is_replaced_behind_its_link(
    buffer: RolloutBuffer, small: RolloutBuffer, tmp_path: Path
) -> None:
    real = save_rollout(buffer, tmp_path / "real")
    os.chmod(real, 0o750)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert save_rollout(small, link) == link
    assert link.is_symlink() and len(os.listdir(real)) == 8
    assert (real.stat().st_mode & 0o777) == 0o750  # the replaced directory's mode is kept
    assert _litter(tmp_path) == []


def test_the_working_directory_is_committed_in_place(
    buffer: RolloutBuffer, small: RolloutBuffer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    save_rollout(buffer, ".")
    save_rollout(small, ".")
    assert Path.cwd() == work and len(os.listdir(work)) == 8
    assert ReplayDataset(ReplayDatasetConfig.from_capture_dir(work)).num_samples == 3
    assert _litter(tmp_path) == [] and _litter(work) == []
