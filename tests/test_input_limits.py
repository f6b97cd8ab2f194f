"""The input boundary's helpers: one-line bounded messages, JSON limits, files, memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import townlet._input_limits as limits
from townlet._input_limits import (
    MAX_NESTING_DEPTH,
    check_allocation,
    check_structure,
    loads_json,
    one_line,
    read_text,
    short_repr,
)
from townlet.errors import ConfigError, ReplayDataError


def test_one_line_joins_lines_and_cuts_long_messages() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    cut = one_line("x" * 10_000, limit=50)
    assert len(cut) == 50 and cut.endswith("…")


def test_short_repr_is_bounded_for_shared_structures() -> None:
    level: object = ["x"] * 9
    for _ in range(9):  # 9**10 leaves if expanded: what a YAML alias bomb builds
        level = [level] * 9
    text = short_repr(level)
    assert len(text) <= 120


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[" * 5000 + "]" * 5000, f"nested deeper than {MAX_NESTING_DEPTH} levels"),
        ("[" * 70 + "]" * 70, f"nested deeper than {MAX_NESTING_DEPTH} levels"),
        ("9" * 5000, "out of range"),
        (str(2**64), "out of range"),
        ("1e400", "out of the float64 range"),
        ("-1e400", "out of the float64 range"),
        ('{"a": ', "is not valid JSON (line 1 column 7"),
    ],
)
def test_loads_json_refuses_what_python_would_crash_on(text: str, fragment: str) -> None:
    with pytest.raises(ReplayDataError) as info:
        loads_json(text, ReplayDataError, "f.json")
    assert str(info.value).startswith("f.json") and fragment in str(info.value)


def test_loads_json_keeps_ordinary_documents() -> None:
    text = json.dumps({"a": [1, 2.5, None, True], "seed": 2**64 - 1, "x": float("nan")})
    data = loads_json(text, ReplayDataError, "f.json")
    assert data["seed"] == 2**64 - 1 and data["a"] == [1, 2.5, None, True]
    nested = "[" * MAX_NESTING_DEPTH + "]" * MAX_NESTING_DEPTH
    assert loads_json(nested, ReplayDataError, "f.json") is not None


def test_bad_utf8_bytes_name_the_offset() -> None:
    with pytest.raises(ReplayDataError, match=r"f.json is not valid UTF-8 \(byte 3"):
        loads_json(b'"ab\xff"', ReplayDataError, "f.json")


def test_node_limit_stops_an_alias_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_DOCUMENT_NODES", 1000)
    shared = [1] * 100
    with pytest.raises(ConfigError, match="more than 1000 values"):
        check_structure([shared] * 100, ConfigError, "c.yaml")


def test_read_text_limits_size_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 2000)
    with pytest.raises(ConfigError, match="is 2000 bytes, over the 1000-byte limit"):
        read_text(path, ConfigError, f"{path}: config file", limit=1000)


def test_read_text_names_invalid_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid path"):
        read_text(str(tmp_path / "a\0b"), ConfigError, "a: config file")
    with pytest.raises(ConfigError, match="file name too long"):
        read_text(tmp_path / ("x" * 300), ConfigError, "x: config file")
    with pytest.raises(ConfigError, match="a parent of the path is not a directory"):
        (tmp_path / "file").write_text("")
        read_text(tmp_path / "file" / "c.toml", ConfigError, "c: config file")


def test_check_allocation_compares_with_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 2**30)
    check_allocation(2**29, ReplayDataError, "s.npz")
    with pytest.raises(ReplayDataError, match=r"s.npz: needs 2.0 GiB but only 1.0 GiB"):
        check_allocation(2**31, ReplayDataError, "s.npz")


def test_available_memory_is_known_on_linux() -> None:
    available = limits.available_memory_bytes()
    assert available is None or available > 0


def test_sample_header_bytes_are_checked_against_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _replay_helpers import make_sample
    from townlet.policy.replay.io import load_replay_sample, save_replay_sample

    path, _ = save_replay_sample(make_sample(), tmp_path / "s.npz")
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 100)
    with pytest.raises(ReplayDataError, match="of memory is available"):
        load_replay_sample(path)
