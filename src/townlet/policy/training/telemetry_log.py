"""The PPO telemetry log of one run: sampling and rotation (``spec/reference-ppo.md`` §13).

Epoch ``e`` (1-based within the run) is logged when ``e % log_frequency == 0``. With
``max_log_entries = m``, the base file takes ``m`` lines, then ``<name>.1`` the next ``m``,
``<name>.2`` …; the rotation index and the line count restart with every run, and every file is
appended to — so a second run writing to the same path appends to the base file and then to
``.1`` again, exactly as the reference. Lines go through
:func:`~townlet.dto.telemetry.write_telemetry` (labelled 1.2, or 1.3 with extension keys;
``append=True``: one write + fsync per line).
"""

from __future__ import annotations

from pathlib import Path

import attrs

from townlet.dto.policy import PPOTrainingResult
from townlet.dto.telemetry import write_telemetry
from townlet.errors import ConfigError


@attrs.frozen(kw_only=True)
class TelemetryLog:
    """Where the next logged epoch goes: ``path`` (the base file), the current rotation
    ``index`` (0 = base file) and the ``count`` of lines in the current file this run.
    ``max_entries`` None means no rotation."""

    path: Path = attrs.field(converter=Path)
    log_frequency: int = 1
    max_entries: int | None = None
    index: int = 0
    count: int = 0

    @property
    def current(self) -> Path:
        """The file the next line is written to (before any rotation it triggers)."""
        if self.index == 0:
            return self.path
        return self.path.with_name(f"{self.path.name}.{self.index}")


def open_log(
    path: str | Path, *, log_frequency: int = 1, max_entries: int | None = None
) -> TelemetryLog:
    """Start a run's log: check the settings and create the base file (and its folders) now,
    as the reference did, so a run that logs nothing still leaves its (empty) file.

    ``max_entries`` None or ``<= 0`` means unlimited (the reference's rule). Raises
    :class:`~townlet.errors.ConfigError` when ``log_frequency < 1``.
    """
    if isinstance(log_frequency, bool) or log_frequency < 1:
        raise ConfigError(f"log_frequency must be an integer >= 1, got {log_frequency!r}")
    limit = max_entries if max_entries is not None and max_entries > 0 else None
    log = TelemetryLog(path=path, log_frequency=log_frequency, max_entries=limit)
    log.path.parent.mkdir(parents=True, exist_ok=True)
    log.path.touch(exist_ok=True)
    return log


def log_epoch(log: TelemetryLog, epoch: int, record: PPOTrainingResult) -> TelemetryLog:
    """Append ``record`` (epoch ``epoch``, 1-based) when sampling selects it, rotating first when
    the current file is full; return the updated log position."""
    if epoch % log.log_frequency != 0:
        return log
    if log.max_entries is not None and log.count >= log.max_entries:
        log = attrs.evolve(log, index=log.index + 1, count=0)
    write_telemetry([record], log.current, append=True)
    return attrs.evolve(log, count=log.count + 1)
