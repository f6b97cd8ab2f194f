"""``townlet-train telemetry validate|convert``: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from townlet.cli import main

REFERENCE_ROOT = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "townlet-artifacts"
)


def _ref(relative: str) -> str:
    if not REFERENCE_ROOT.is_dir():
        pytest.skip(f"reference artifacts not found at {REFERENCE_ROOT}")
    return str(REFERENCE_ROOT / relative)


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    log = _ref("generated/ppo_v1_2_queue_conflict_bs1.jsonl")
    assert main(["telemetry", "validate", log]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["logs"][0]["records"] == 50


def test_validate_failure_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    good = _ref("generated/ppo_v1_2_queue_conflict_bs3.jsonl")
    old = _ref("docs/samples/ppo_epoch_log.jsonl")
    assert main(["telemetry", "validate", good, old, "--format", "human"]) == 1
    out = capsys.readouterr().out
    assert f"{good}: 50 record(s) validated." in out
    assert f"{old}:1: missing required telemetry keys" in out


def test_validate_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "b.json"
    baseline.write_text('{"baseline_reward_sum": -30.0}')
    log = _ref("generated/ppo_v1_2_queue_conflict_bs1.jsonl")
    args = ["telemetry", "validate", log, "--baseline", str(baseline), "--relative"]
    assert main([*args, "--drift-threshold", "6.5"]) == 0
    assert main([*args, "--drift-threshold", "5"]) == 1
    out = capsys.readouterr().out
    assert "Baseline drift exceeds threshold 5.0: baseline_reward_sum=-6.000000" in out


def test_unreadable_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["telemetry", "validate", str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "telemetry file not found" in err
    (tmp_path / "bad.jsonl").write_text("nope\n")
    assert main(["telemetry", "validate", str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl:1: invalid JSON" in capsys.readouterr().err
    watch = _ref("artifacts/phase4/queue_conflict/watch.jsonl")
    assert main(["telemetry", "convert", watch, "--to", "1.1"]) == 2


def test_convert_to_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _ref("docs/samples/ppo_epoch_log.jsonl")
    assert main(["telemetry", "convert", log, "--to", "1.2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1 and lines[0]["telemetry_version"] == 1.2 and lines[0]["cycle_id"] is None
    out = tmp_path / "v10.jsonl"
    assert main(["telemetry", "convert", log, "--to", "1.0", "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"input": log, "output": str(out), "version": "1.0", "records": 1}
    assert out.read_text() == Path(log).read_text()


def test_convert_bad_version_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["telemetry", "convert", "x.jsonl", "--to", "2.0"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
