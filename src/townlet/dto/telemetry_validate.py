"""Validate PPO telemetry logs the way the reference's ``validate_ppo_telemetry.py`` did.

Rules per record (``spec/reference-ppo.md`` §17), with the reference's messages:

1. ``telemetry_version`` is a finite number;
2. the 19 base keys (core + health) are present and finite numbers;
3. the four ``conflict.rivalry_*_avg`` keys are present and finite numbers;
4. version ≥ 1.1: the eleven numeric 1.1 keys are present and finite, ``data_mode`` is a string;
   version < 1.1: none of those keys appears;
5. when all four of ``baseline_sample_count``/``_reward_mean``/``_reward_sum``/``_reward_sum_mean``
   are present they (and ``baseline_log_prob_mean`` if present) are finite numbers;
6. (townlet) the online-rollout extensions ``episode_return_mean``/``episode_length_mean``, when
   present, are finite numbers (they are optional: an update in which no episode ended has none).

Unknown keys are allowed and 1.2 ``anneal_*`` keys are not checked. Unlike the reference, every
problem of every record is reported instead of stopping at the first. Optionally the
``baseline_*`` values are compared with a baseline file (drift per record, worst per key, and a
failure when any ``|delta|`` exceeds a threshold). Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import attrs

from townlet._input_limits import loads_json, read_text, short_repr, show_path
from townlet.dto.policy import PPOTrainingResult
from townlet.dto.telemetry import (
    BASELINE_KEYS,
    CORE_KEYS,
    HEALTH_KEYS,
    V11_KEYS,
    iter_json_lines,
    telemetry_line,
)
from townlet.errors import TelemetryError

# The validator treats the health quartet as base-required (reference-ppo §8).
BASE_KEYS: tuple[str, ...] = CORE_KEYS + HEALTH_KEYS
CONFLICT_KEYS: tuple[str, ...] = (
    "conflict.rivalry_max_mean_avg",
    "conflict.rivalry_max_max_avg",
    "conflict.rivalry_avoid_count_mean_avg",
    "conflict.rivalry_avoid_count_max_avg",
)
# Every 1.1 key but data_mode is numeric.
V11_NUMERIC_KEYS: tuple[str, ...] = tuple(key for key in V11_KEYS if key != "data_mode")
BASELINE_QUARTET: tuple[str, ...] = BASELINE_KEYS[:4]
EPISODE_KEYS: tuple[str, ...] = ("episode_return_mean", "episode_length_mean")


@attrs.frozen(kw_only=True)
class DriftRow:
    """Baseline drift of one record: ``record - baseline`` per key, and in % of the baseline
    (None where the baseline is 0)."""

    epoch: int | None
    delta: Mapping[str, float]
    relative_pct: Mapping[str, float | None]


@attrs.frozen(kw_only=True)
class TelemetryValidation:
    """The outcome of validating one log: ``ok`` is True when ``errors`` is empty.

    ``errors`` are ``source:line: message`` strings (schema problems, and a drift-threshold
    breach); ``drift``/``worst_drift`` are filled only when a baseline was given and shares keys
    with the records (``drift_keys``).
    """

    source: str
    records: int
    errors: tuple[str, ...]
    drift_keys: tuple[str, ...] = ()
    drift: tuple[DriftRow, ...] = ()
    worst_drift: Mapping[str, float] = attrs.field(factory=dict)
    drift_threshold: float | None = None
    baseline_used: bool = False

    @property
    def ok(self) -> bool:
        """True when no rule and no drift threshold failed."""
        return not self.errors


def is_numeric(value: Any) -> TypeGuard[float]:
    """An int or float (bool counts, as in the reference) that is finite."""
    return isinstance(value, int | float) and math.isfinite(value)


def _numeric_problems(record: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    return [
        f"Field '{key}' must be a finite number, got {record[key]!r}"
        for key in keys
        if key in record and not is_numeric(record[key])
    ]


def _v11_problems(record: Mapping[str, Any], version: float) -> list[str]:
    if version < 1.1:
        present = sorted(key for key in V11_NUMERIC_KEYS if key in record)
        if present:
            return [f"telemetry_version {version} should not include v1.1-only keys: {present}"]
        return []
    problems = []
    missing = sorted(key for key in V11_NUMERIC_KEYS if key not in record)
    if missing:
        problems.append(f"telemetry_version {version} requires numeric keys: {missing}")
    problems += _numeric_problems(record, V11_NUMERIC_KEYS)
    if "data_mode" not in record:
        problems.append(f"telemetry_version {version} requires string keys: ['data_mode']")
    elif not isinstance(record["data_mode"], str):
        problems.append("field 'data_mode' must be a string")
    return problems


def validate_record(record: Mapping[str, Any]) -> list[str]:
    """Every rule violation of one telemetry object, in the reference's order and words."""
    problems = _numeric_problems(record, ["telemetry_version"])
    missing = sorted(key for key in BASE_KEYS if key not in record)
    if missing:
        problems.append(f"missing required telemetry keys: {missing}")
    problems += _numeric_problems(record, [k for k in BASE_KEYS if k != "telemetry_version"])
    missing_conflict = sorted(key for key in CONFLICT_KEYS if key not in record)
    if missing_conflict:
        problems.append(f"missing conflict telemetry keys: {missing_conflict}")
    problems += _numeric_problems(record, CONFLICT_KEYS)
    version = record.get("telemetry_version")
    if is_numeric(version):
        problems += _v11_problems(record, float(version))
    if all(key in record for key in BASELINE_QUARTET):
        problems += _numeric_problems(record, BASELINE_KEYS)
    problems += _numeric_problems(record, EPISODE_KEYS)
    return problems


def load_baseline(source: str | Path | Mapping[str, Any]) -> dict[str, float]:
    """The ``baseline_*`` values of a baseline JSON object (file or mapping).

    Raises :class:`TelemetryError` when the file is unreadable or not an object, a value is not
    a finite number, or no ``baseline_*`` key is present.
    """
    label = "baseline"
    if isinstance(source, Mapping):
        data: Any = source
    else:
        label = str(source)
        text = read_text(source, TelemetryError, f"{show_path(source)}: baseline file")
        data = loads_json(
            text, TelemetryError, label, syntax=": cannot read baseline file: not valid JSON"
        )
    if not isinstance(data, Mapping):
        raise TelemetryError(f"{label}: Baseline file must contain a JSON object")
    values: dict[str, float] = {}
    for key in BASELINE_KEYS:
        if key in data:
            if not is_numeric(data[key]):
                raise TelemetryError(
                    f"{label}: Field '{key}' must be a finite number, got {short_repr(data[key])}"
                )
            values[key] = float(data[key])
    if not values:
        raise TelemetryError(f"{label}: Baseline file does not provide recognised baseline_* keys")
    return values


def _drift(
    records: Sequence[Mapping[str, Any]], baseline: Mapping[str, float]
) -> tuple[tuple[str, ...], tuple[DriftRow, ...], dict[str, float]]:
    keys = tuple(k for k in BASELINE_KEYS if k in baseline and any(k in r for r in records))
    rows: list[DriftRow] = []
    worst: dict[str, float] = {}
    for record in records:
        delta = {k: float(record[k]) - baseline[k] for k in keys if is_numeric(record.get(k))}
        relative = {k: (d / baseline[k] * 100.0 if baseline[k] else None) for k, d in delta.items()}
        for key, value in delta.items():
            if key not in worst or abs(value) > abs(worst[key]):
                worst[key] = value
        epoch = record.get("epoch")
        rows.append(
            DriftRow(
                epoch=int(epoch) if is_numeric(epoch) else None, delta=delta, relative_pct=relative
            )
        )
    return keys, tuple(rows), worst


def _load_objects(
    source: str | Path | Sequence[PPOTrainingResult] | Sequence[Mapping[str, Any]],
) -> tuple[str, list[tuple[str, Mapping[str, Any]]]]:
    if isinstance(source, str | Path):
        objs: list[tuple[str, Mapping[str, Any]]] = [
            (f"{source}:{n}", obj) for n, obj in iter_json_lines(Path(source))
        ]
        if not objs:
            raise TelemetryError(f"{source}: no telemetry records found")
        return str(source), objs
    items: list[tuple[str, Mapping[str, Any]]] = []
    for index, item in enumerate(source):
        if isinstance(item, PPOTrainingResult):
            items.append((f"record {index}", telemetry_line(item)))
        elif isinstance(item, Mapping):
            items.append((f"record {index}", item))
        else:
            raise TelemetryError(f"record {index}: expected a PPOTrainingResult or a mapping")
    return "<records>", items


def validate_telemetry(
    source: str | Path | Sequence[PPOTrainingResult] | Sequence[Mapping[str, Any]],
    *,
    baseline: str | Path | Mapping[str, Any] | None = None,
    drift_threshold: float | None = None,
    relative: bool = False,
) -> TelemetryValidation:
    """Validate a telemetry log (a path, records, or raw objects) and optionally baseline drift.

    Schema problems and a drift beyond ``drift_threshold`` become ``errors`` of the result;
    ``relative`` only asks the human rendering for percentages (they are always computed).
    Raises :class:`TelemetryError` when the input cannot be read at all (missing file, invalid
    JSON, a non-object line, no records, a bad baseline file).
    """
    del relative  # computed always; kept for parity with the reference's flag
    label, objs = _load_objects(source)
    errors = [f"{where}: {problem}" for where, obj in objs for problem in validate_record(obj)]
    if baseline is None:
        return TelemetryValidation(source=label, records=len(objs), errors=tuple(errors))
    keys, rows, worst = _drift([obj for _, obj in objs], load_baseline(baseline))
    if drift_threshold is not None:
        breaches = [f"{k}={v:+.6f}" for k, v in worst.items() if abs(v) > drift_threshold]
        if breaches:
            joined = ", ".join(breaches)
            errors.append(f"{label}: Baseline drift exceeds threshold {drift_threshold}: {joined}")
    return TelemetryValidation(
        source=label,
        records=len(objs),
        errors=tuple(errors),
        drift_keys=keys,
        drift=rows,
        worst_drift=worst,
        drift_threshold=drift_threshold,
        baseline_used=True,
    )


def format_validation(report: TelemetryValidation, *, relative: bool = False) -> str:
    """Render a report as the reference's text: errors or ``n record(s) validated``, drift table."""
    lines = list(report.errors)
    if not report.errors:
        lines.append(f"{report.source}: {report.records} record(s) validated.")
    if report.drift_keys:
        header = ["epoch", *report.drift_keys]
        lines.append("  ".join(header))
        for row in report.drift:
            cells = [str(row.epoch)]
            for key in report.drift_keys:
                cell = f"{row.delta[key]:+.6f}" if key in row.delta else "n/a"
                if relative and key in row.delta:
                    pct = row.relative_pct.get(key)
                    cell += f" ({pct:+.2f}%)" if pct is not None else " (n/a)"
                cells.append(cell)
            lines.append("  ".join(cells))
        lines.append("Worst absolute drift by key:")
        lines += [f"  {key}: {value:+.6f}" for key, value in report.worst_drift.items()]
    elif report.baseline_used:
        lines.append(f"{report.source}: no overlapping baseline keys; drift check skipped.")
    return "\n".join(lines)
