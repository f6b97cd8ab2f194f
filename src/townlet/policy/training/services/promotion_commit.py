"""Changing ``promotion.json`` and its history log together or not at all.

A promote, rollback or swap changes two files: the state (``promotion.json``, replaced
atomically) and the history log (``promotion_history.jsonl``, one line appended). A write-ahead
record makes the pair atomic:

1. ``promotion.json.pending`` (atomic) holds the new state and the log line;
2. the line is appended to the log (fsynced);
3. ``promotion.json`` is replaced by the new state;
4. the pending record is removed.

An error in 2–3 undoes what was done (the log is cut back, the pending record removed) and
propagates: nothing changed. A process killed between 1 and 4 leaves the pending record, and the
next command on the run directory rolls it forward (:func:`recover_pending_change`) before it
reads the state, so the state and its history always agree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from townlet._atomic import write_text_atomic
from townlet._input_limits import loads_json, read_text, show_path
from townlet.errors import PromotionError
from townlet.policy.training.services.promotion import PromotionState
from townlet.policy.training.services.promotion_io import (
    promotion_event_to_dict,
    promotion_state_from_dict,
    promotion_state_to_dict,
)

PENDING_SUFFIX = ".pending"


def pending_path(state_path: Path) -> Path:
    """Where the write-ahead record of ``state_path`` lives."""
    return state_path.with_name(state_path.name + PENDING_SUFFIX)


def log_line(state: PromotionState) -> str:
    """The history log line for ``state``'s latest event (the event plus the ``"state"``
    snapshot, the reference's shape), newline included."""
    if not state.history:
        raise PromotionError("promotion log: the state has no history event to log")
    line = promotion_event_to_dict(state.history[-1])
    line["state"] = promotion_state_to_dict(state)
    return json.dumps(line, sort_keys=False) + "\n"


def commit_change(state_path: Path, log_path: Path, state: PromotionState) -> None:
    """Write ``state`` to ``state_path`` and append its event to ``log_path``, both or neither.

    Raises ``OSError`` (a full or read-only disk, a log path that is a directory) with both
    files as they were, and ``PromotionError`` for a state without history.
    """
    line = log_line(state)
    text = json.dumps(promotion_state_to_dict(state), indent=2) + "\n"
    pending = pending_path(state_path)
    record = {"state": promotion_state_to_dict(state), "log_line": line}
    write_text_atomic(pending, json.dumps(record) + "\n")
    try:
        size = _append(log_path, line)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    try:
        write_text_atomic(state_path, text)
    except BaseException:
        _truncate(log_path, size)
        pending.unlink(missing_ok=True)
        raise
    pending.unlink()


def _append(path: Path, line: str) -> int:
    """Append ``line`` durably; return the log's size before (to cut back to)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        data = line.encode("utf-8")
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {path}")
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    return size


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)
        os.fsync(handle.fileno())


def recover_pending_change(state_path: Path, log_path: Path) -> bool:
    """Finish a change a killed process left half done; return whether there was one.

    The log line is appended unless the log already ends with it; then the state is written.
    Raises ``PromotionError`` for a damaged pending record.
    """
    pending = pending_path(state_path)
    if not pending.exists():
        return False
    where = f"{show_path(pending)}: pending promotion change"
    record = loads_json(read_text(pending, PromotionError, where), PromotionError, where)
    line, state = _pending_parts(record, where)
    if not _ends_with(log_path, line):
        _append(log_path, line)
    write_text_atomic(state_path, json.dumps(promotion_state_to_dict(state), indent=2) + "\n")
    pending.unlink()
    return True


def _pending_parts(record: Any, where: str) -> tuple[str, PromotionState]:
    if not isinstance(record, dict) or not isinstance(record.get("log_line"), str):
        raise PromotionError(f"{where}: expected an object with 'state' and 'log_line'")
    state = promotion_state_from_dict(record.get("state") or {}, source=where)
    return record["log_line"], state


def _ends_with(path: Path, line: str) -> bool:
    data = line.encode("utf-8")
    if not path.is_file() or path.stat().st_size < len(data):
        return False
    with open(path, "rb") as handle:
        handle.seek(-len(data), os.SEEK_END)
        return handle.read() == data
