"""Deflate codecs for capture files (issue #16): every codec's output decodes with zlib (what
numpy's loader uses), chunks deflated on their own chain into one stream, the choice comes
from ``TOWNLET_DEFLATE`` with clear errors, and ISA-L serves only the levels it has."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from townlet.cli import main
from townlet.policy.replay import deflate
from townlet.policy.replay.deflate import FINAL_BLOCK, ISAL, ZLIB, Codec, check_choice, codec_for
from townlet.policy.replay.npz_stream import (
    MemberStream,
    array_member,
    npy_header,
    write_archive,
)

needs_isal = pytest.mark.skipif(ISAL is None, reason="isal is not installed")


def _data() -> bytes:
    rng = np.random.default_rng(3)
    maps = (rng.random((40, 4, 11, 11)) < 0.1).astype(np.float32)  # mostly zeros, as the town
    return maps.tobytes()


def _served(levels: list[int | None]) -> list[Any]:
    """(codec, level) pairs a capture can use: ISA-L only at the levels it has."""
    pairs = [(ZLIB, level) for level in levels]
    if ISAL is not None:
        pairs += [(ISAL, level) for level in levels if level is None or level in range(1, 4)]
    return [pytest.param(c, lvl, id=f"{c.name}-{lvl}") for c, lvl in pairs]


@pytest.mark.parametrize(("codec", "level"), _served([1, 2, 3, 6]))
def test_chained_blocks_decode_as_one_stream(codec: Codec, level: int) -> None:
    data = _data()
    pieces = [codec.block(data[i : i + 5000], level) for i in range(0, len(data), 5000)]
    stream = b"".join(pieces) + FINAL_BLOCK
    inflate = zlib.decompressobj(-15)
    assert inflate.decompress(stream) == data
    assert inflate.eof and inflate.unused_data == b""
    assert codec.crc32(data, 0) == zlib.crc32(data)
    assert zlib.decompress(codec.whole(data, level), -15) == data


@pytest.mark.parametrize(("codec", "level"), _served([None, 0, 1, 3, 9]))
def test_chunked_members_make_archives_numpy_reads(codec: Codec, level: int | None) -> None:
    array = np.frombuffer(_data(), dtype=np.float32).reshape(40, 4, 11, 11)
    member = MemberStream("map", level, codec=codec)
    member.feed(npy_header(array))
    for start in range(0, 40, 7):
        member.feed_array(array[start : start + 7])
    member.finish()
    small = array_member("rewards", np.arange(40, dtype=np.float32), level, codec=codec)
    handle = io.BytesIO()
    write_archive(handle, [member, small])
    with zipfile.ZipFile(io.BytesIO(handle.getvalue())) as archive:
        assert archive.testzip() is None  # every CRC and size checks out
    with np.load(io.BytesIO(handle.getvalue()), allow_pickle=False) as loaded:
        assert np.array_equal(loaded["map"], array)
        assert np.array_equal(loaded["rewards"], np.arange(40, dtype=np.float32))


def test_whole_members_are_numpy_bytes() -> None:
    arrays = {"a": np.arange(300, dtype=np.int64), "b": np.ones((5, 7), dtype=np.float32)}
    handle, ours = io.BytesIO(), io.BytesIO()
    np.savez_compressed(handle, **arrays)
    write_archive(ours, [array_member(k, a, 6) for k, a in arrays.items()])
    assert ours.getvalue() == handle.getvalue()


@needs_isal
def test_isal_serves_levels_one_to_three_only() -> None:
    assert [codec_for(level, "auto").name for level in range(10)] == (
        ["zlib"] + ["isal"] * 3 + ["zlib"] * 6
    )
    assert codec_for(None, "isal") is ISAL  # stored members: its CRC-32
    assert codec_for(1, "zlib") is ZLIB


def test_choice_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOWNLET_DEFLATE", "zlib")
    assert check_choice() == "zlib" and codec_for(1) is ZLIB
    monkeypatch.setenv("TOWNLET_DEFLATE", "gzip")
    with pytest.raises(ValueError, match=r"TOWNLET_DEFLATE must be one of auto, zlib, isal, "):
        check_choice()
    with pytest.raises(ValueError, match=r"deflate must be one of auto, zlib, isal, got 'x'"):
        check_choice("x")


def test_isal_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deflate, "ISAL", None)
    assert codec_for(1, "auto") is ZLIB
    with pytest.raises(ValueError, match=r"deflate=isal needs the isal package: pip install"):
        codec_for(1, "isal")


@pytest.mark.parametrize("value", ["gzip", "isal"])
def test_cli_refuses_a_bad_choice_before_capturing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    monkeypatch.setattr(deflate, "ISAL", None)  # so that "isal" is unavailable too
    monkeypatch.setenv("TOWNLET_DEFLATE", value)
    argv = ["capture", "--agents", "3", "--ticks", "4", "--out", str(tmp_path / "c"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "TOWNLET_DEFLATE" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("choice", ["zlib", "auto"])
def test_cli_capture_decodes_the_same_with_either_codec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, choice: str
) -> None:
    monkeypatch.setenv("TOWNLET_DEFLATE", choice)
    out = tmp_path / choice
    argv = ["capture", "--agents", "5", "--ticks", "30", "--seed", "2", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    monkeypatch.setenv("TOWNLET_DEFLATE", "zlib")
    plain = tmp_path / "plain"
    assert main(["capture", "--agents", "5", "--ticks", "30", "--seed", "2", "--out",
                 str(plain), "--quiet", "--writers", "0"]) == 0  # fmt: skip
    assert _decoded(out) == _decoded(plain)


def _decoded(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                out[path.name] = {k: archive[k].tobytes() for k in archive}
        else:
            out[path.name] = path.read_bytes()
    return out


REFERENCE_REPLAY = Path(__file__).resolve().parents[2] / "townlet-ref/src/townlet/policy/replay.py"


@pytest.mark.parametrize("choice", ["zlib", "isal"])
def test_reference_loader_reads_a_cli_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, choice: str
) -> None:
    # The CLI's maps are chained blocks of fresh compressors (zlib or ISA-L): the original
    # Townlet's loader must read them as it reads numpy's files.
    if not REFERENCE_REPLAY.is_file():
        pytest.skip(f"reference checkout not found at {REFERENCE_REPLAY}")
    if choice == "isal" and ISAL is None:
        pytest.skip("isal is not installed")
    monkeypatch.setenv("TOWNLET_DEFLATE", choice)
    out = tmp_path / "cap"
    argv = ["capture", "--agents", "4", "--ticks", "120", "--seed", "3", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    npz = out / "rollout_sample_agent_2_003.npz"
    code = (
        "import importlib.util, sys\nfrom pathlib import Path\n"
        f"spec = importlib.util.spec_from_file_location('ref_replay', {str(REFERENCE_REPLAY)!r})\n"
        "module = importlib.util.module_from_spec(spec)\nsys.modules['ref_replay'] = module\n"
        "spec.loader.exec_module(module)\n"
        f"npz = Path({str(npz)!r})\n"
        "sample = module.load_replay_sample(npz, npz.with_suffix('.json'))\n"
        "print(sample.map.shape, float(sample.map.sum()), sample.actions.tolist())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REFERENCE_REPLAY.parents[2])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode != 0 and "ModuleNotFoundError" in done.stderr:
        pytest.skip(f"the reference's dependencies are not installed: {done.stderr[-200:]}")
    with np.load(npz) as ours:
        expected = f"{ours['map'].shape} {float(ours['map'].sum())} {ours['actions'].tolist()}"
    assert done.stdout.strip() == expected, done.stderr[-500:]
