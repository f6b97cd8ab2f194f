"""Where a resumed run's telemetry log continues, and how it is cut back to a checkpoint.

The log of a run is a function of the records written so far (sampling and rotation are
deterministic, :mod:`~townlet.policy.training.telemetry_log`), so a resumed run only needs the
count of records its checkpoint had seen; the files themselves are cut back to the sizes they
had at that checkpoint, so lines written after it (and before the kill) are not duplicated.
Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from townlet.policy.training.telemetry_log import TelemetryLog


def log_after(log: TelemetryLog, written: int) -> TelemetryLog:
    """``log`` (fresh, as :func:`~townlet.policy.training.telemetry_log.open_log` returns it)
    positioned after ``written`` records of this run were handed to it."""
    lines = written // log.log_frequency
    if log.max_entries is None or lines == 0:
        return attrs.evolve(log, index=0, count=lines)
    index = (lines - 1) // log.max_entries
    return attrs.evolve(log, index=index, count=lines - index * log.max_entries)


def _rotated(path: Path, index: int) -> Path:
    return path if index == 0 else path.with_name(f"{path.name}.{index}")


def log_sizes(log: TelemetryLog) -> dict[str, int]:
    """The byte sizes of the files the run may still append to: the current one and every
    existing later rotation, keyed by rotation index (as text, for a JSON header)."""
    sizes: dict[str, int] = {}
    index = log.index
    while (target := _rotated(log.path, index)).exists() or index == log.index:
        sizes[str(index)] = target.stat().st_size if target.exists() else 0
        index += 1
    return sizes


def cut_logs(path: str | os.PathLike[str], sizes: Mapping[str, int]) -> None:
    """Cut the log at ``path`` back to ``sizes`` (from :func:`log_sizes`): recorded files are
    truncated to their size, later rotations that did not exist then are removed."""
    base = Path(path)
    index = min(int(key) for key in sizes)
    while (target := _rotated(base, index)).exists():
        size = sizes.get(str(index))
        if size is None:
            target.unlink()
        elif target.stat().st_size > size:
            os.truncate(target, size)
        index += 1
