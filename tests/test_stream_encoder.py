"""Encoding while stepping (issue #16): ``npz_stream`` archives (numpy's bytes for whole
members; readable at every level; chunked members equal to whole ones), ``sidecar_texts`` equal to
``sidecar_json``, and ``SampleEncoder`` captures whose files decode to exactly what
``save_rollout`` writes — the JSON files byte for byte — with errors midway leaving nothing."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import townlet.policy.rollout.stream_encoder as stream_encoder
from townlet.cli import main
from townlet.config import Config
from townlet.errors import CaptureWriteError, RolloutError
from townlet.policy.replay import NPZ_KEYS, sidecar_json, sidecar_texts
from townlet.policy.replay.npz_stream import (
    MemberStream,
    array_member,
    npy_header,
    write_archive,
)
from townlet.policy.rollout import capture_rollout, save_rollout
from townlet.policy.rollout.stream_encoder import SampleEncoder
from townlet.policy.training.services.rollout import rollout_world_config
from townlet.world import WorldConfig, scaled_world_config


def _arrays() -> dict[str, Any]:
    sample = capture_rollout(WorldConfig(num_agents=2), "scripted", 30, seed=1).samples[1]
    return {key: getattr(sample, key) for key in NPZ_KEYS}


def _archive(arrays: dict[str, Any], level: int | None) -> bytes:
    handle = io.BytesIO()
    write_archive(handle, [array_member(k, a, level) for k, a in arrays.items()])
    return handle.getvalue()


def test_whole_members_give_numpy_bytes() -> None:
    arrays = _arrays()
    for level, save in ((6, np.savez_compressed), (None, np.savez)):
        handle = io.BytesIO()
        save(handle, **arrays)
        assert _archive(arrays, level) == handle.getvalue()


@pytest.mark.parametrize("level", [None, 0, 1, 6, 9])
def test_archives_read_back_at_every_level(level: int | None) -> None:
    arrays = _arrays()
    data = _archive(arrays, level)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None  # every CRC and size checks out
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        assert list(loaded.files) == list(NPZ_KEYS)
        for key in NPZ_KEYS:
            assert loaded[key].dtype == arrays[key].dtype
            assert np.array_equal(loaded[key], arrays[key])


@pytest.mark.parametrize("level", [None, 1])
def test_pieces_in_any_split_make_the_same_member(level: int | None) -> None:
    array = np.arange(4000, dtype=np.float32).reshape(40, 100)
    whole = array_member("x", array, level)
    split = MemberStream("x", level)
    split.feed(npy_header(array))
    for start in range(0, 40, 7):
        split.feed_array(array[start : start + 7])
    split.finish()
    assert (split.crc, split.size) == (whole.crc, whole.size)
    joined, reference = b"".join(split.pieces), b"".join(whole.pieces)
    if level is None:
        assert joined == reference
    else:  # each piece deflated on its own: other deflate bytes, the same member
        assert zlib.decompress(joined, -15) == zlib.decompress(reference, -15)


def test_sidecar_texts_equal_sidecar_json() -> None:
    metas = [s.metadata for s in capture_rollout(scaled_world_config(40), "scripted", 9).samples]
    odd = [
        {"m": {"a": math.nan, "b": -0.0, "c": math.inf, "é": 1, "t": True}, "x": -0.0, "y": [1]},
        {"m": {}, "x": 0.0, "y": [1]},
        {},
        {"y": [1], "m": {"a": 1.5}},
    ]
    for group in (metas, odd):
        assert sidecar_texts(group) == [sidecar_json(m) for m in group]


def _decoded(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                out[path.name] = {k: (archive[k].dtype, archive[k].tobytes()) for k in archive}
        else:
            out[path.name] = path.read_bytes()
    return out


@pytest.mark.parametrize(("level", "workers"), [(1, 2), (None, 1), (6, 0)])
def test_streamed_capture_decodes_to_save_rollout(
    tmp_path: Path, level: int | None, workers: int
) -> None:
    config = scaled_world_config(30)
    with SampleEncoder(level=level, workers=workers, chunk_ticks=7) as encoder:
        buffer = capture_rollout(config, "scripted", 45, 3, on_recorded=encoder.on_recorded)
        encoder.save(buffer, tmp_path / "streamed", prefix="rollout_sample")
    again = capture_rollout(config, "scripted", 45, 3)
    plain = save_rollout(
        again, tmp_path / "plain", compress=level is not None, compress_level=level
    )
    assert _decoded(tmp_path / "streamed") == _decoded(plain)
    if level is None:  # stored members: the very bytes numpy writes
        for path in (tmp_path / "streamed").glob("*.npz"):
            assert path.read_bytes() == (plain / path.name).read_bytes()


def test_cli_capture_equals_save_rollout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert main(["capture", "--agents", "12", "--ticks", "60", "--seed", "4", "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    world = rollout_world_config(Config(), social_stage=None, num_agents=12)
    buffer = capture_rollout(world, "scripted", 60, 4)
    assert summary["frames"] == buffer.frames
    assert _decoded(out) == _decoded(save_rollout(buffer, tmp_path / "api"))


def test_agents_that_come_and_go_fall_back_to_save_rollout(tmp_path: Path) -> None:
    pytest.importorskip("pettingzoo")
    from townlet.envs.pettingzoo_town import make_town_env

    def capture(encoder: SampleEncoder | None = None) -> Any:
        env = make_town_env(WorldConfig(num_agents=4, hunger_decay=0.05))
        hook = None if encoder is None else encoder.on_recorded
        return capture_rollout(env, "random", 80, seed=0, on_recorded=hook)

    with SampleEncoder(level=1, workers=2, chunk_ticks=5) as encoder:
        buffer = capture(encoder)
        assert min(s.timesteps for s in buffer.samples) < 80  # some agents left
        encoder.save(buffer, tmp_path / "streamed", prefix="rollout_sample")
    plain = save_rollout(capture(), tmp_path / "plain", compress_level=1)
    assert {p.name: p.read_bytes() for p in (tmp_path / "streamed").iterdir()} == {
        p.name: p.read_bytes() for p in plain.iterdir()
    }


def _failing_write(code: int) -> Any:
    real = stream_encoder.write_new_file
    calls: list[Path] = []

    def write(path: Path, fill: Any, *, sync: bool = True) -> None:
        calls.append(path)
        if len(calls) == 5:
            path.write_bytes(b"half")
            raise OSError(code, os.strerror(code))
        real(path, fill, sync=sync)

    return write


@pytest.mark.parametrize("workers", [0, 2])
def test_full_disk_midway_keeps_the_old_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    target = save_rollout(
        capture_rollout(WorldConfig(num_agents=3), "scripted", 10), tmp_path / "c"
    )
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    monkeypatch.setattr(stream_encoder, "write_new_file", _failing_write(errno.ENOSPC))
    with SampleEncoder(level=1, workers=workers) as encoder:
        buffer = capture_rollout(
            scaled_world_config(8), "scripted", 20, on_recorded=encoder.on_recorded
        )
        with pytest.raises(CaptureWriteError, match=r"capture not saved to .*c: No space left"):
            encoder.save(buffer, target, prefix="rollout_sample")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def _failing(real: Any, code: int, at: int = 5) -> Any:
    calls: list[Path] = []

    def fail(path: Path, *args: Any, **kwargs: Any) -> None:
        calls.append(path)
        if len(calls) == at:
            raise OSError(code, os.strerror(code))
        real(path, *args, **kwargs)

    return fail


@pytest.mark.parametrize("where", ["fill_file", "create_empty_files"])
def test_prepared_files_failing_keep_the_old_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # With ``out`` the encoder creates the files while the town steps and fills them at save:
    # a failure in either leaves the old capture whole and no staging directory behind.
    target = save_rollout(
        capture_rollout(WorldConfig(num_agents=3), "scripted", 10), tmp_path / "c"
    )
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    at = 1 if where == "create_empty_files" else 5
    monkeypatch.setattr(stream_encoder, where, _failing(getattr(stream_encoder, where), 28, at))
    # A failed creation stops the capture itself; a failed fill, the save.
    with (
        SampleEncoder(level=1, workers=2, out=target) as encoder,
        pytest.raises(CaptureWriteError, match=r"capture not saved to .*c: No space left"),
    ):
        buffer = capture_rollout(
            scaled_world_config(8), "scripted", 20, on_recorded=encoder.on_recorded
        )
        encoder.save(buffer)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_prepared_files_are_the_ones_filled(tmp_path: Path) -> None:
    # The staging directory exists from the first tick, holding every sample's empty files,
    # survives the commit's own lock re-entry, and becomes the capture.
    seen: list[set[str]] = []
    with SampleEncoder(level=1, workers=2, out=tmp_path / "c", prefix="p") as encoder:

        def hook(recorder: Any) -> None:
            encoder.on_recorded(recorder)
            staging = [p for p in tmp_path.iterdir() if p.name.startswith(".c.capture-")]
            seen.append({p.name for d in staging for p in d.iterdir()})

        buffer = capture_rollout(scaled_world_config(3), "scripted", 12, on_recorded=hook)
        out = encoder.save(buffer)
    stems = [f"p_agent_{i}_{i + 1:03d}" for i in range(3)]
    assert seen[-1] == {f"{s}.{e}" for s in stems for e in ("npz", "json")}
    assert {p.name for p in out.iterdir()} == seen[-1] | {"p_manifest.json", "p_metrics.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    plain = save_rollout(capture_rollout(scaled_world_config(3), "scripted", 12), tmp_path / "d")
    renamed = {name.replace("rollout_sample", "p"): v for name, v in _decoded(plain).items()}
    assert {k: v for k, v in _decoded(out).items() if k.endswith(".npz")} == {
        k: v for k, v in renamed.items() if k.endswith(".npz")
    }


def test_interrupted_capture_leaves_no_staging(tmp_path: Path) -> None:
    target = save_rollout(capture_rollout(WorldConfig(num_agents=2), "scripted", 5), tmp_path / "c")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(KeyboardInterrupt), SampleEncoder(level=1, workers=2, out=target) as encoder:

        def hook(recorder: Any) -> None:
            encoder.on_recorded(recorder)
            if recorder.recorded == 6:
                raise KeyboardInterrupt

        capture_rollout(scaled_world_config(4), "scripted", 20, on_recorded=hook)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_an_encoder_holds_the_out_lock(tmp_path: Path) -> None:
    with (
        SampleEncoder(level=1, workers=1, out=tmp_path / "c"),
        pytest.raises(RolloutError, match="being written by another capture"),
    ):
        _other_process_takes_lock(tmp_path / "c")


def _other_process_takes_lock(target: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom townlet.policy.rollout.save import capture_target\n"
        "from townlet.errors import RolloutError\n"
        "try:\n    capture_target(sys.argv[1]).__enter__()\n"
        "except RolloutError as e:\n    print(e); sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True)
    if done.returncode == 3:
        raise RolloutError(done.stdout.strip())


def test_prepared_files_committed_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The working directory cannot be swapped, so the staging directory is made inside it and
    # the files are moved in; an older capture there is replaced, a user's file kept.
    work = tmp_path / "work"
    save_rollout(capture_rollout(WorldConfig(num_agents=5), "scripted", 6), work)
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    with SampleEncoder(level=1, workers=2, out=".") as encoder:
        staged: list[str] = []

        def hook(recorder: Any) -> None:
            encoder.on_recorded(recorder)
            staged.extend(p.name for p in work.iterdir() if p.name.endswith(".tmp"))

        buffer = capture_rollout(scaled_world_config(3), "scripted", 12, on_recorded=hook)
        encoder.save(buffer)
    assert staged and staged[0].startswith(".rollout_sample.capture-")
    plain = save_rollout(capture_rollout(scaled_world_config(3), "scripted", 12), tmp_path / "p")
    mine = _decoded(work)
    assert mine.pop("notes.txt") == b"mine"
    assert mine == _decoded(plain)


def test_threads_only_for_captures_that_record_enough_per_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # workers=None (the CLI's default): small captures encode in the capturing thread, large
    # ones on default_workers() threads; the files are the same either way.
    per_agent = 4 * 11 * 11 * 4 + 33 * 4  # map and features bytes per agent and tick
    monkeypatch.setattr(stream_encoder, "THREADS_FROM_BYTES_PER_TICK", 6 * per_agent)
    decoded = []
    for agents, lanes in ((5, 0), (6, stream_encoder.default_workers())):
        with SampleEncoder(level=1, out=tmp_path / f"c{agents}") as encoder:
            buffer = capture_rollout(
                scaled_world_config(agents), "scripted", 15, 2, on_recorded=encoder.on_recorded
            )
            assert encoder.lanes == lanes
            decoded.append(_decoded(encoder.save(buffer)))
        plain = save_rollout(capture_rollout(scaled_world_config(agents), "scripted", 15, 2),
                             tmp_path / f"p{agents}")  # fmt: skip
        assert decoded[-1] == _decoded(plain)


def test_a_staging_directory_that_cannot_be_made_early_is_made_at_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(directory: Any, prefix: str) -> Path:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(stream_encoder, "prepare_staging", refuse)
    with SampleEncoder(level=1, workers=2, out=tmp_path / "c") as encoder:
        buffer = capture_rollout(
            scaled_world_config(4), "scripted", 9, on_recorded=encoder.on_recorded
        )
        out = encoder.save(buffer)
    plain = save_rollout(capture_rollout(scaled_world_config(4), "scripted", 9), tmp_path / "p")
    assert _decoded(out) == _decoded(plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "p"]


def test_failing_file_creation_stops_the_capture_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(folder: Path, names: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(stream_encoder, "create_empty_files", full)
    ticks: list[int] = []
    with SampleEncoder(level=1, workers=2, out=tmp_path / "c") as encoder:

        def hook(recorder: Any) -> None:
            ticks.append(recorder.recorded)
            encoder.on_recorded(recorder)

        with pytest.raises(CaptureWriteError, match=r"capture not saved to .*c: No space left"):
            capture_rollout(scaled_world_config(4), "scripted", 3000, on_recorded=hook)
    assert ticks[-1] < 100  # not after the last of 3000 ticks
    assert sorted(p.name for p in tmp_path.iterdir()) == []
