"""Telemetry as columns, text tables and PNG plots (library and CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from townlet.cli import main
from townlet.dto.telemetry import read_telemetry
from townlet.dto.telemetry_table import format_telemetry_table, telemetry_columns
from townlet.errors import TelemetryError

REFERENCE_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
MIXED_V11 = REFERENCE_ROOT / "townlet-artifacts/artifacts/phase4/queue_conflict/ppo_mixed.jsonl"
GENERATED_V12 = REFERENCE_ROOT / "townlet-artifacts/generated/ppo_v1_2_queue_conflict_bs1.jsonl"


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"reference artifact missing: {path}")
    return path


def test_columns_of_a_reference_log_follow_its_lines() -> None:
    log = _need(MIXED_V11)
    columns = telemetry_columns(log, ["epoch", "loss_total", "data_mode"])
    records = read_telemetry(log)
    assert columns["epoch"] == [r.epoch for r in records]
    assert columns["loss_total"] == [r.loss_total for r in records]
    assert columns["loss_total"][0] == pytest.approx(1.59819412479798)
    assert columns["data_mode"][0] == "replay"


def test_a_key_missing_from_a_record_reads_as_none(tmp_path: Path) -> None:
    log = tmp_path / "mixed.jsonl"
    lines = _need(GENERATED_V12).read_text().splitlines()
    v10 = tmp_path / "v10.jsonl"
    assert (
        main(["telemetry", "convert", str(GENERATED_V12), "--to", "1.0", "--output", str(v10)]) == 0
    )
    log.write_text(lines[0] + "\n" + v10.read_text().splitlines()[0] + "\n")
    columns = telemetry_columns(log, ["epoch", "queue_conflict_events"])
    assert columns["queue_conflict_events"][0] is not None
    assert columns["queue_conflict_events"][1] is None


def test_unknown_key_names_the_keys_that_exist() -> None:
    with pytest.raises(TelemetryError, match=r"unknown telemetry key\(s\) \['nope'\].*loss_total"):
        telemetry_columns(_need(MIXED_V11), ["nope"])


def test_text_table_is_aligned_and_marks_missing_values() -> None:
    text = format_telemetry_table({"epoch": [1.0, 2.0], "loss": [0.123456, None]})
    assert text.splitlines() == ["epoch    loss", "    1  0.1235", "    2       -"]


def test_cli_table_prints_rows(capsys: pytest.CaptureFixture[str]) -> None:
    log = _need(MIXED_V11)
    assert main(["telemetry", "table", str(log), "--keys", "epoch,loss_total"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["epoch", "loss_total"]
    assert out[1].split() == ["1", "1.598"]
    assert len(out) == 1 + len(read_telemetry(log))


def test_cli_table_unknown_key_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["telemetry", "table", str(_need(MIXED_V11)), "--keys", "nope"]) == 2
    assert "unknown telemetry key(s) ['nope']" in capsys.readouterr().err


def test_cli_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots" / "curves.png"
    code = main(
        ["telemetry", "plot", str(_need(MIXED_V11)), "--out", str(out), "--keys", "loss_total"]
    )
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(out.parent.iterdir()) == [out]  # no temp file left behind
    assert '"keys": [\n    "loss_total"\n  ]' in capsys.readouterr().out


def test_plot_of_an_unknown_key_writes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from townlet.plots import plot_telemetry

    with pytest.raises(TelemetryError):
        plot_telemetry(_need(MIXED_V11), tmp_path / "x.png", keys=["nope"])
    assert list(tmp_path.iterdir()) == []
