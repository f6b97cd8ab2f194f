"""Telemetry as columns and as a text table: the notebook and terminal view of a log.

Any version reads (1.0–1.3): keys a record lacks show as ``None`` (``-`` in the text table).
The columns are plain lists, ready for ``pandas.DataFrame(columns)`` or matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from townlet.dto.policy import PPOTrainingResult
from townlet.dto.telemetry import read_telemetry, telemetry_line
from townlet.errors import TelemetryError

DEFAULT_KEYS: tuple[str, ...] = (
    "epoch",
    "loss_total",
    "loss_policy",
    "loss_value",
    "clip_fraction",
    "kl_divergence",
    "grad_norm",
)


def _records(source: str | Path | Iterable[PPOTrainingResult]) -> list[PPOTrainingResult]:
    if isinstance(source, str | Path):
        return read_telemetry(source)
    return list(source)


def telemetry_columns(
    source: str | Path | Iterable[PPOTrainingResult], keys: Sequence[str] = DEFAULT_KEYS
) -> dict[str, list[Any]]:
    """``{key: [value per record]}`` for a log path or records; a key a record lacks gives None.

    Keys are telemetry line keys (``loss_total``, ``anneal_stage``,
    ``conflict.rivalry_max_mean_avg``, ``episode_return_mean``, …). Raises
    :class:`TelemetryError` for an unreadable log and for a key that no record carries (the
    message lists the keys that exist).
    """
    lines = [telemetry_line(r) for r in _records(source)]
    known = sorted({key for line in lines for key in line})
    missing = [key for key in keys if key not in known]
    if missing:
        raise TelemetryError(
            f"unknown telemetry key(s) {missing}; the records carry: {', '.join(known)}"
        )
    return {key: [line.get(key) for line in lines] for key in keys}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def format_telemetry_table(columns: dict[str, list[Any]]) -> str:
    """Columns from :func:`telemetry_columns` as an aligned text table (4 significant digits)."""
    keys = list(columns)
    rows = [[_cell(v) for v in values] for values in zip(*columns.values(), strict=True)]
    widths = [max([len(k), *(len(r[i]) for r in rows)]) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)
