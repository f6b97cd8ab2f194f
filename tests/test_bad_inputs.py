"""The malformed-input corpus (``tests/data/bad``): each file is refused by its loader with the
documented error type and a one-line message of bounded length that says what is wrong."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from _loaders import LOADERS
from townlet._input_limits import MAX_MESSAGE_CHARS

BAD = Path(__file__).parent / "data" / "bad"
INDEX = json.loads((BAD / "index.json").read_text())


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("the loader blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _check_message(message: str, expect: str) -> None:
    assert "\n" not in message
    assert len(message) <= MAX_MESSAGE_CHARS + 400  # the path (<= 300) + the bounded detail
    assert expect in message, message


@pytest.mark.parametrize("case", INDEX, ids=lambda case: case["file"])
def test_corpus_file_is_refused_with_its_message(case: dict[str, str]) -> None:
    if case["loader"] == "checkpoint":
        pytest.importorskip("torch")
    loader, error = LOADERS[case["loader"]]
    assert error.__name__ == case["error"]
    with pytest.raises(error) as info:
        loader(BAD / case["file"])
    _check_message(str(info.value), case["expect"])
    assert case["file"] in str(info.value) or case["loader"] == "manifest"


def test_every_loader_has_corpus_files() -> None:
    covered = {case["loader"] for case in INDEX}
    assert covered >= set(LOADERS) - {"capture_metrics", "npz_header", "config_yaml"}


@pytest.mark.parametrize(
    "case", [c for c in INDEX if c["loader"] == "npz"], ids=lambda c: c["file"]
)
def test_npz_corpus_is_refused_from_headers_too(case: dict[str, str]) -> None:
    loader, error = LOADERS["npz_header"]
    try:
        loader(BAD / case["file"])
    except error as exc:
        _check_message(str(exc), "")
    else:  # value checks (actions range, object arrays) happen when the sample is loaded
        assert case["file"] in ("npz_uint64_actions.npz",)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_fifo_is_refused_without_blocking(tmp_path: Path, name: str) -> None:
    if name == "checkpoint":
        pytest.importorskip("torch")
    suffixes = {"config": ".toml", "config_yaml": ".yaml", "npz": ".npz", "npz_header": ".npz"}
    suffix = suffixes.get(name, ".json")
    fifo = tmp_path / f"pipe{suffix}"
    os.mkfifo(fifo)
    loader, error = LOADERS[name]
    if name == "capture_metrics":  # a missing metrics file is allowed: a FIFO reads as absent
        assert loader(fifo) == {}
        return
    with pytest.raises(error) as info:
        loader(fifo)
    assert "not a regular file" in str(info.value) or "not found" in str(info.value)


@pytest.mark.parametrize("name", ["config", "sidecar", "telemetry", "promotion", "run_state"])
def test_device_and_directory_are_refused(tmp_path: Path, name: str) -> None:
    loader, error = LOADERS[name]
    if name == "config":
        target = tmp_path / "dir.toml"
        target.mkdir()
    else:
        target = Path("/dev/zero")
    with pytest.raises(error) as info:
        loader(target)
    assert "not a regular file" in str(info.value) or "directory" in str(info.value)


def test_symlink_loop_in_manifest_entry(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(["loop/x.npz"]))
    loader, error = LOADERS["manifest"]
    try:
        entries = loader(manifest)
    except error as exc:  # refused while resolving
        _check_message(str(exc), "entry 0")
    else:  # resolved lexically: the sample loader then refuses the path
        with pytest.raises(LOADERS["npz"][1], match="too many levels of symbolic links"):
            LOADERS["npz"][0](entries[0].sample)


def test_symlink_loop_as_config(tmp_path: Path) -> None:
    loop = tmp_path / "c.toml"
    loop.symlink_to(loop)
    loader, error = LOADERS["config"]
    with pytest.raises(error, match="too many levels of symbolic links"):
        loader(loop)
