"""The telemetry validator: the reference's rules and messages, baseline drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from townlet.dto.telemetry import read_telemetry
from townlet.dto.telemetry_validate import (
    format_validation,
    load_baseline,
    validate_record,
    validate_telemetry,
)
from townlet.errors import TelemetryError

REFERENCE_ROOT = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "townlet-artifacts"
)


def _reference() -> Path:
    if not REFERENCE_ROOT.is_dir():
        pytest.skip(f"reference artifacts not found at {REFERENCE_ROOT}")
    return REFERENCE_ROOT


def _golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (_reference() / "tests" / "golden" / "ppo_social" / "baseline.json").read_text()
    )
    return data


def test_generated_logs_and_golden_pass() -> None:
    for name in ("ppo_v1_2_queue_conflict_bs1.jsonl", "ppo_v1_2_queue_conflict_bs3.jsonl"):
        report = validate_telemetry(_reference() / "generated" / name)
        assert report.ok and report.records == 50
    assert validate_record(_golden()) == []


def test_pre_health_logs_fail_like_the_reference() -> None:
    report = validate_telemetry(_reference() / "docs" / "samples" / "ppo_epoch_log.jsonl")
    assert not report.ok
    health = (
        "['adv_min_std', 'adv_zero_std_batches', 'clip_fraction_max', 'clip_triggered_minibatches']"
    )
    log = _reference() / "docs" / "samples" / "ppo_epoch_log.jsonl"
    assert report.errors == (f"{log}:1: missing required telemetry keys: {health}",)


def test_rules_and_messages() -> None:
    golden = _golden()
    assert validate_record({**golden, "telemetry_version": "1.2"})[0] == (
        "Field 'telemetry_version' must be a finite number, got '1.2'"
    )
    assert "Field 'loss_total' must be a finite number, got nan" in validate_record(
        {**golden, "loss_total": float("nan")}
    )
    missing = {k: v for k, v in golden.items() if k != "conflict.rivalry_max_max_avg"}
    assert validate_record(missing) == [
        "missing conflict telemetry keys: ['conflict.rivalry_max_max_avg']"
    ]
    no_cycle = {k: v for k, v in golden.items() if k not in ("cycle_id", "data_mode")}
    assert validate_record(no_cycle) == [
        "telemetry_version 1.2 requires numeric keys: ['cycle_id']",
        "telemetry_version 1.2 requires string keys: ['data_mode']",
    ]
    assert validate_record({**golden, "data_mode": 1}) == ["field 'data_mode' must be a string"]
    assert validate_record({**golden, "telemetry_version": 1.0})[0].startswith(
        "telemetry_version 1.0 should not include v1.1-only keys: ['batch_entropy_mean'"
    )
    assert validate_record({**golden, "baseline_reward_sum": "x"}) == [
        "Field 'baseline_reward_sum' must be a finite number, got 'x'"
    ]
    partial = {k: v for k, v in golden.items() if k != "baseline_reward_sum_mean"}
    assert validate_record({**partial, "baseline_reward_sum": "x"}) == []
    assert validate_record({**golden, "anything_else": [1]}) == []


def test_records_in_memory() -> None:
    records = read_telemetry(_reference() / "generated" / "ppo_v1_2_queue_conflict_bs3.jsonl")
    report = validate_telemetry(records)
    assert report.ok and report.source == "<records>"
    bad = validate_telemetry([{**_golden(), "steps": None}])
    assert bad.errors == ("record 0: Field 'steps' must be a finite number, got None",)


def test_baseline_drift(tmp_path: Path) -> None:
    log = _reference() / "generated" / "ppo_v1_2_queue_conflict_bs1.jsonl"
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"baseline_reward_sum": -30.0, "baseline_sample_count": 0.0}))
    report = validate_telemetry(log, baseline=baseline, drift_threshold=10.0)
    assert report.ok
    assert report.drift_keys == ("baseline_sample_count", "baseline_reward_sum")
    assert report.drift[0].delta == {"baseline_sample_count": 3.0, "baseline_reward_sum": -6.0}
    assert report.drift[0].relative_pct == {
        "baseline_sample_count": None,
        "baseline_reward_sum": 20.0,
    }
    assert report.worst_drift == {"baseline_sample_count": 3.0, "baseline_reward_sum": -6.0}
    failed = validate_telemetry(log, baseline=baseline, drift_threshold=5.0)
    assert failed.errors == (
        f"{log}: Baseline drift exceeds threshold 5.0: baseline_reward_sum=-6.000000",
    )
    text = format_validation(report, relative=True)
    assert "1  +3.000000 (n/a)  -6.000000 (+20.00%)" in text
    assert "Worst absolute drift by key:" in text


def test_bad_baselines(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(TelemetryError, match="Baseline file must contain a JSON object"):
        load_baseline(tmp_path / "list.json")
    with pytest.raises(TelemetryError, match="does not provide recognised baseline_"):
        load_baseline({"loss_total": 1.0})
    with pytest.raises(TelemetryError, match="Field 'baseline_reward_sum' must be a finite number"):
        load_baseline({"baseline_reward_sum": "x"})
    with pytest.raises(TelemetryError, match="baseline file not found"):
        load_baseline(tmp_path / "none.json")
    report = validate_telemetry([_golden()], baseline={"baseline_sample_count": 1.0})
    assert report.drift_keys == ("baseline_sample_count",)
    no_overlap = {k: v for k, v in _golden().items() if not k.startswith("baseline_")}
    skipped = validate_telemetry([no_overlap], baseline={"baseline_sample_count": 1.0})
    assert "drift check skipped" in format_validation(skipped)
