"""Telemetry JSONL: real reference logs read and round-trip; versions convert; atomic writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from townlet.dto.convert import from_dict
from townlet.dto.policy import PPOTrainingResult
from townlet.dto.telemetry import (
    ANNEAL_KEYS,
    EXTENSION_KEYS,
    V11_KEYS,
    convert_telemetry,
    line_version,
    parse_version,
    read_telemetry,
    record_from_line,
    telemetry_line,
    version_keys,
    write_telemetry,
)
from townlet.errors import TelemetryError

REFERENCE_ROOT = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "townlet-artifacts"
)
NOT_TELEMETRY = {"watch.jsonl", "soak_watch.jsonl", "ppo_log.jsonl"}


def _reference() -> Path:
    if not REFERENCE_ROOT.is_dir():
        pytest.skip(f"reference artifacts not found at {REFERENCE_ROOT}")
    return REFERENCE_ROOT


def _telemetry_logs() -> list[Path]:
    if not REFERENCE_ROOT.is_dir():
        return []
    return sorted(p for p in REFERENCE_ROOT.rglob("*.jsonl") if p.name not in NOT_TELEMETRY)


def _objects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_reference_corpus_is_complete() -> None:
    root = _reference()
    names = {p.relative_to(root).as_posix() for p in _telemetry_logs()}
    assert "docs/samples/ppo_epoch_log.jsonl" in names
    assert "docs/samples/ppo_conflict_telemetry.jsonl" in names
    assert "generated/ppo_v1_2_queue_conflict_bs1.jsonl" in names
    assert len(names) >= 9


@pytest.mark.parametrize(
    "path", _telemetry_logs(), ids=lambda p: p.relative_to(REFERENCE_ROOT).as_posix()
)
def test_reference_log_round_trips(path: Path, tmp_path: Path) -> None:
    records = read_telemetry(path)
    original = _objects(path)
    assert len(records) == len(original)
    version = original[0]["telemetry_version"]
    out = tmp_path / "out.jsonl"
    assert write_telemetry(records, out, version=version) == len(records)
    assert _objects(out) == original


def test_generated_v12_logs_are_byte_identical(tmp_path: Path) -> None:
    for name in ("ppo_v1_2_queue_conflict_bs1.jsonl", "ppo_v1_2_queue_conflict_bs3.jsonl"):
        source = _reference() / "generated" / name
        write_telemetry(read_telemetry(source), tmp_path / name)
        assert (tmp_path / name).read_bytes() == source.read_bytes()


def test_values_of_a_v12_line() -> None:
    record = read_telemetry(_reference() / "generated" / "ppo_v1_2_queue_conflict_bs1.jsonl")[0]
    assert (record.epoch, record.updates, record.transitions) == (1.0, 12.0, 180.0)
    assert record.data_mode == "replay" and record.telemetry_version == 1.2
    assert record.extras["conflict.rivalry_avoid_count_max_avg"] == pytest.approx(4 / 3)


def test_v10_sample_has_no_newer_fields() -> None:
    record = read_telemetry(_reference() / "docs" / "samples" / "ppo_epoch_log.jsonl")[0]
    assert record.telemetry_version == 1.0
    assert record.data_mode is None and record.epoch_duration_sec is None
    assert record.adv_min_std is None  # the health keys came later


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("docs/samples/ppo_log.jsonl", "missing required telemetry keys: ['kl_divergence', "),
        ("artifacts/phase4/queue_conflict/watch.jsonl", "(not a PPO telemetry line?)"),
        ("artifacts/phase4/queue_conflict/soak_watch.jsonl", "missing required telemetry keys"),
    ],
)
def test_non_telemetry_files_are_rejected(relative: str, expected: str) -> None:
    path = _reference() / relative
    with pytest.raises(TelemetryError) as exc:
        read_telemetry(path)
    assert str(exc.value).startswith(f"{path}:1: ")
    assert expected in str(exc.value)


def test_golden_summary_structures() -> None:
    data = json.loads(
        (_reference() / "tests" / "golden" / "ppo_social" / "baseline.json").read_text()
    )
    record = record_from_line(data)
    assert record.reward_advantage_corr == -1.0 and record.grad_norm_max == pytest.approx(
        0.518, abs=1e-3
    )
    assert telemetry_line(record, 1.2) == data
    assert from_dict(PPOTrainingResult, data) == record


def _line(**changes: Any) -> dict[str, Any]:
    path = _reference() / "generated" / "ppo_v1_2_queue_conflict_bs1.jsonl"
    return {**json.loads(path.read_text().splitlines()[0]), **changes}


def test_down_and_up_conversion() -> None:
    record = record_from_line(_line())
    v10 = telemetry_line(record, "1.0")
    assert v10["telemetry_version"] == 1.0
    assert not set(V11_KEYS) & set(v10) and "shared_meal_events" not in v10
    assert "adv_min_std" in v10 and "conflict.rivalry_max_mean_avg" in v10
    up = telemetry_line(record_from_line(v10), "1.2")
    assert all(up[key] is None for key in V11_KEYS)
    assert not set(ANNEAL_KEYS) & set(up)
    assert {k: v for k, v in up.items() if v is not None} == {**v10, "telemetry_version": 1.2}


def test_anneal_block_at_12_and_extensions_only_at_13() -> None:
    record = record_from_line(
        _line(anneal_cycle=1.0, anneal_stage="ppo", **{k: None for k in ANNEAL_KEYS[2:]})
    )
    assert set(ANNEAL_KEYS) <= set(telemetry_line(record, 1.2))
    assert not set(ANNEAL_KEYS) & set(telemetry_line(record, 1.1))
    ext = from_dict(PPOTrainingResult, {**_line(), "loss_bc": 0.25, "critic_warmup": False})
    line13 = telemetry_line(ext, 1.3)
    assert line13["loss_bc"] == 0.25 and line13["critic_warmup"] is False
    assert line13["telemetry_version"] == 1.3
    assert telemetry_line(ext) == line13  # unlabelled: extension values make it 1.3
    line12 = telemetry_line(ext, 1.2)
    assert not set(EXTENSION_KEYS) & set(line12)
    assert line12 == telemetry_line(from_dict(PPOTrainingResult, _line()), 1.2)
    assert "loss_bc" not in telemetry_line(ext, 1.1)


def test_line_without_extensions_is_labelled_12_and_holds_only_12_keys(tmp_path: Path) -> None:
    plain = from_dict(PPOTrainingResult, {**_line(), "conflict.rivalry_max_mean_avg": 0.5})
    assert line_version(plain) == 1.2
    line = telemetry_line(plain)
    assert line["telemetry_version"] == 1.2
    declared = {k for k in line if not k.startswith("conflict.")}
    assert declared <= version_keys(1.2)
    assert not declared & set(EXTENSION_KEYS)
    path = tmp_path / "log.jsonl"
    write_telemetry([plain, from_dict(PPOTrainingResult, {**_line(), "bc_coef": 0.1})], path)
    versions = [json.loads(t)["telemetry_version"] for t in path.read_text().splitlines()]
    assert versions == [1.2, 1.3]


def test_13_lines_read_and_convert_down_to_12(tmp_path: Path) -> None:
    source = tmp_path / "ext.jsonl"
    obj = {**_line(telemetry_version=1.3), "loss_bc": 0.5, "episode_length_mean": 7.0}
    source.write_text(json.dumps(obj) + "\n")
    (record,) = read_telemetry(source)
    assert record.telemetry_version == 1.3 and record.loss_bc == 0.5
    assert telemetry_line(record) == obj  # a 1.3 line round-trips
    (down,) = convert_telemetry(source, version="1.2", output=tmp_path / "down.jsonl")
    assert down == _line(telemetry_version=1.2)
    assert json.loads((tmp_path / "down.jsonl").read_text()) == down
    assert down["telemetry_version"] == 1.2


def test_legacy_12_line_with_extensions_is_read_and_relabelled(tmp_path: Path) -> None:
    source = tmp_path / "old.jsonl"
    source.write_text(json.dumps({**_line(), "bc_coef": 0.2}) + "\n")
    (record,) = read_telemetry(source)
    assert record.bc_coef == 0.2
    assert telemetry_line(record)["telemetry_version"] == 1.3
    with pytest.raises(TelemetryError, match=r"telemetry_version 1\.1 line has a later"):
        record_from_line({**_line(telemetry_version=1.1), "bc_coef": 0.2})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"telemetry_version": 2.0}, "unsupported telemetry version 2.0"),
        (
            {"foo": 1.0},
            "Unknown field 'foo' in PPOTrainingResult. Only 'conflict.*' dynamic fields are "
            "allowed.",
        ),
        ({"clip_fraction": 1.5}, "clip_fraction: 1.5 must be less than or equal to 1"),
        ({"epoch": "1"}, "epoch: expected a number"),
        ({"anneal_cycle": 1.0}, "incomplete anneal block"),
        ({"telemetry_version": 1.0}, "telemetry_version 1.0 line has a later version's key"),
    ],
)
def test_malformed_lines(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(_line()) + "\n\n" + json.dumps(_line(**changes)) + "\n")
    with pytest.raises(TelemetryError) as exc:
        read_telemetry(path)
    assert str(exc.value).startswith(f"{path}:3: ") and message in str(exc.value)


def test_v11_line_missing_v11_key(tmp_path: Path) -> None:
    obj = _line(telemetry_version=1.1)
    del obj["cycle_id"]
    with pytest.raises(
        TelemetryError, match=r"telemetry_version 1.1 line is missing keys: \['cycle_id'\]"
    ):
        record_from_line(obj)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TelemetryError, match="telemetry file not found"):
        read_telemetry(tmp_path / "nope.jsonl")
    (tmp_path / "bad.jsonl").write_text("{\n")
    with pytest.raises(TelemetryError, match=r"bad.jsonl:1: invalid JSON"):
        read_telemetry(tmp_path / "bad.jsonl")
    (tmp_path / "list.jsonl").write_text("[1]\n")
    with pytest.raises(TelemetryError, match=r"list\.jsonl:1: expected JSON object, got list"):
        read_telemetry(tmp_path / "list.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TelemetryError, match=r"empty\.jsonl: no telemetry records found"):
        read_telemetry(tmp_path / "empty.jsonl")


def test_parse_version() -> None:
    assert parse_version("1.1") == 1.1 and parse_version(1) == 1.0 and parse_version(1.2) == 1.2
    assert parse_version("1.3") == 1.3
    with pytest.raises(TelemetryError, match=r"expected 1\.0, 1\.1, 1\.2 or 1\.3"):
        parse_version("v1")


def test_append_and_atomic_replace(tmp_path: Path) -> None:
    records = [record_from_line(_line(epoch=float(i))) for i in (1, 2, 3)]
    path = tmp_path / "sub" / "log.jsonl"
    write_telemetry(records[:1], path)
    write_telemetry(records[1:], path, append=True)
    assert [r.epoch for r in read_telemetry(path)] == [1.0, 2.0, 3.0]
    write_telemetry(records[2:], path)  # replace, not append
    assert [r.epoch for r in read_telemetry(path)] == [3.0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["log.jsonl"]  # no temp left


def test_append_refuses_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(_line())[:40])
    record = record_from_line(_line())
    with pytest.raises(TelemetryError, match="last line has no newline"):
        write_telemetry([record], path, append=True)
    assert len(path.read_text()) == 40


def test_failed_replace_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    record = record_from_line(_line())
    write_telemetry([record], path)
    before = path.read_bytes()

    def broken() -> Any:
        yield record
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        write_telemetry(broken(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]


def test_convert_telemetry(tmp_path: Path) -> None:
    source = _reference() / "docs" / "samples" / "ppo_conflict_telemetry.jsonl"
    lines = convert_telemetry(source, version="1.0", output=tmp_path / "v10.jsonl")
    assert lines == _objects(tmp_path / "v10.jsonl")
    assert lines[0]["telemetry_version"] == 1.0 and "data_mode" not in lines[0]
    back = convert_telemetry(tmp_path / "v10.jsonl", version="1.1")
    assert back[0]["data_mode"] is None and back[0]["loss_total"] == lines[0]["loss_total"]
