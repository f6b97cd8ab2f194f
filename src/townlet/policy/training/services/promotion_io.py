"""Promotion state on disk, the JSONL transition log, and policy hashes.

The state file (``promotion.json``) is the reference's ``PromotionManager.snapshot()`` plus
``schema_version`` and ``evaluations``; a reference snapshot (for instance the ``promotion``
block that the reference's anneal CLI prints) therefore loads too — missing keys take the
reference's ``import_state`` defaults. Unknown keys and wrongly typed values are errors that
name the file and the field. Files are written atomically (temp file + ``os.replace``).
Torch-free: :func:`policy_hash` reads tensors by duck typing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from townlet._atomic import append_durable, write_text_atomic
from townlet._input_limits import loads_json, read_text, sha256_regular_file, show_path
from townlet.errors import PromotionError
from townlet.policy.training.services.promotion import (
    HISTORY_LIMIT,
    PROMOTION_EVENTS,
    PROMOTION_PHASES,
    PromotionEvent,
    PromotionState,
    normalize_release,
    to_plain,
)

PROMOTION_SCHEMA_VERSION = "1.0"
_STATE_KEYS = frozenset(
    {
        "schema_version",
        "state",
        "pass_streak",
        "required_passes",
        "candidate_ready",
        "candidate_ready_tick",
        "last_result",
        "last_evaluated_tick",
        "evaluations",
        "current_release",
        "initial_release",
        "candidate",
        "history",
        "counted_evidence",
    }
)
_EVENT_KEYS = frozenset({"event", "tick", "metadata", "previous_release", "release", "timestamp"})


def promotion_event_to_dict(event: PromotionEvent) -> dict[str, Any]:
    """A history event as JSON-ready dict (``timestamp`` only when set)."""
    out: dict[str, Any] = {
        "event": event.event,
        "tick": event.tick,
        "metadata": to_plain(event.metadata),
        "previous_release": to_plain(event.previous_release),
        "release": to_plain(event.release),
    }
    if event.timestamp is not None:
        out["timestamp"] = event.timestamp
    return out


def promotion_state_to_dict(state: PromotionState) -> dict[str, Any]:
    """The state as the reference snapshot (plus ``schema_version`` and ``evaluations``)."""
    return {
        "schema_version": PROMOTION_SCHEMA_VERSION,
        "state": state.state,
        "pass_streak": state.pass_streak,
        "required_passes": state.required_passes,
        "candidate_ready": state.candidate_ready,
        "candidate_ready_tick": state.candidate_ready_tick,
        "last_result": state.last_result,
        "last_evaluated_tick": state.last_evaluated_tick,
        "evaluations": state.evaluations,
        "current_release": to_plain(state.current_release),
        "initial_release": to_plain(state.initial_release),
        "candidate": to_plain(state.candidate),
        "history": [promotion_event_to_dict(event) for event in state.history],
        "counted_evidence": list(state.counted_evidence),
    }


class _Reader:
    """Typed field access over one JSON object, with errors naming the source and field."""

    def __init__(self, data: Mapping[str, Any], source: str, prefix: str = "") -> None:
        self.data, self.source, self.prefix = data, source, prefix

    def fail(self, key: str, expected: str) -> PromotionError:
        got = self.data.get(key)
        return PromotionError(
            f"{self.source}: field '{self.prefix}{key}': expected {expected}, got {got!r}"
        )

    def int(self, key: str, default: int | None, *, lo: int = 0, hi: int | None = None) -> Any:
        value = self.data.get(key, default)
        if value is None and default is None:
            return None
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
        if not ok or (hi is not None and value > hi):
            bound = f"an integer >= {lo}" + ("" if hi is None else f" and <= {hi}")
            raise self.fail(key, bound + (" or null" if default is None else ""))
        return value

    def choice(self, key: str, default: str | None, options: tuple[str | None, ...]) -> Any:
        value = self.data.get(key, default)
        if value not in options:
            raise self.fail(key, "one of " + ", ".join(repr(o) for o in options))
        return value

    def mapping(self, key: str, *, optional: bool) -> Mapping[str, Any] | None:
        value = self.data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, "an object" + (" or null" if optional else ""))
        return value

    def check_keys(self, allowed: frozenset[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise PromotionError(
                f"{self.source}: unknown field '{self.prefix}{unknown[0]}' "
                f"(expected one of {', '.join(sorted(allowed))})"
            )


def _event_from_dict(entry: Any, source: str, index: int) -> PromotionEvent:
    if not isinstance(entry, Mapping):
        raise PromotionError(f"{source}: field 'history[{index}]': expected an object")
    reader = _Reader(entry, source, prefix=f"history[{index}].")
    reader.check_keys(_EVENT_KEYS)
    timestamp = entry.get("timestamp")
    if timestamp is not None and not isinstance(timestamp, str):
        raise reader.fail("timestamp", "a string or null")
    return PromotionEvent(
        event=reader.choice("event", None, PROMOTION_EVENTS),
        tick=reader.int("tick", None),
        metadata=reader.mapping("metadata", optional=True) or {},
        previous_release=reader.mapping("previous_release", optional=True),
        release=reader.mapping("release", optional=True),
        timestamp=timestamp,
    )


def promotion_state_from_dict(
    data: Mapping[str, Any], *, source: str = "promotion state"
) -> PromotionState:
    """Rebuild a state from :func:`promotion_state_to_dict` output or a reference snapshot.

    Missing keys default as in the reference's ``import_state``; the history keeps its latest
    :data:`HISTORY_LIMIT` entries.

    Raises:
        PromotionError: an unknown key or a value of the wrong type or range (the message names
            ``source`` and the field).
    """
    reader = _Reader(data, source)
    reader.check_keys(_STATE_KEYS)
    if data.get("schema_version", PROMOTION_SCHEMA_VERSION) != PROMOTION_SCHEMA_VERSION:
        raise reader.fail("schema_version", repr(PROMOTION_SCHEMA_VERSION))
    if not isinstance(data.get("candidate_ready", False), bool):
        raise reader.fail("candidate_ready", "true or false")
    history = data.get("history", [])
    if not isinstance(history, list):
        raise reader.fail("history", "a list")
    initial = reader.mapping("initial_release", optional=True)
    initial = normalize_release(None, config_id=None) if initial is None else initial
    current = reader.mapping("current_release", optional=True)
    events = [_event_from_dict(entry, source, i) for i, entry in enumerate(history)]
    return PromotionState(
        state=reader.choice("state", "monitoring", PROMOTION_PHASES),
        pass_streak=reader.int("pass_streak", 0),
        required_passes=reader.int("required_passes", 2, lo=1, hi=10),
        candidate_ready=data.get("candidate_ready", False),
        candidate_ready_tick=reader.int("candidate_ready_tick", None),
        last_result=reader.choice("last_result", None, (None, "pass", "fail")),
        last_evaluated_tick=reader.int("last_evaluated_tick", None),
        evaluations=reader.int("evaluations", data.get("last_evaluated_tick") or 0),
        initial_release=initial,
        current_release=initial if current is None else current,
        candidate=reader.mapping("candidate", optional=True),
        history=events[-HISTORY_LIMIT:],
        counted_evidence=_counted_evidence(reader),
    )


def _counted_evidence(reader: _Reader) -> tuple[str, ...]:
    value = reader.data.get("counted_evidence", [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise reader.fail("counted_evidence", "a list of evidence id strings")
    return tuple(value[-HISTORY_LIMIT:])


def save_promotion_state(path: str | os.PathLike[str], state: PromotionState) -> Path:
    """Write ``state`` as JSON to ``path`` atomically, creating parents; return the path."""
    target = Path(path)
    write_text_atomic(target, json.dumps(promotion_state_to_dict(state), indent=2) + "\n")
    return target


def load_promotion_state(path: str | os.PathLike[str]) -> PromotionState:
    """Read a state written by :func:`save_promotion_state` (or a reference snapshot).

    Raises:
        PromotionError: the file is missing, unreadable, not JSON, not an object, or has a bad
            field (the message names the file and the field).
    """
    source = Path(path)
    if not source.exists() and not source.is_symlink():
        raise PromotionError(f"{source}: no promotion state file")
    text = read_text(source, PromotionError, f"{show_path(source)}: promotion state")
    data = loads_json(text, PromotionError, str(source), syntax=": not valid JSON")
    if not isinstance(data, Mapping):
        raise PromotionError(f"{source}: expected a JSON object, got {type(data).__name__}")
    return promotion_state_from_dict(data, source=str(source))


def append_promotion_log(path: str | os.PathLike[str], state: PromotionState) -> None:
    """Append the state's latest history event as one JSON line, with ``"state"`` = the snapshot.

    The reference's log line shape (spec §6.2). Unlike the reference, I/O errors propagate.

    Raises:
        PromotionError: the history is empty (nothing to log).
    """
    if not state.history:
        raise PromotionError("promotion log: the state has no history event to log")
    line = promotion_event_to_dict(state.history[-1])
    line["state"] = promotion_state_to_dict(state)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # append_durable refuses a FIFO at once (it would wait for a reader) and fsyncs the line.
    append_durable(target, json.dumps(line, sort_keys=False) + "\n")


def _as_array(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    if not hasattr(value, "tobytes") and not isinstance(value, int | float | list | tuple):
        raise PromotionError(f"policy_hash: parameter {name!r} is not an array or tensor")
    return np.ascontiguousarray(np.asarray(value))


def policy_hash(params: Mapping[str, Any] | bytes) -> str:
    """SHA-256 hex digest identifying a policy's parameters.

    For a mapping of name → array (numpy arrays, or torch tensors read through
    ``.detach().cpu().numpy()``), the digest covers, for each name in sorted order, the name,
    dtype, shape and raw C-order bytes — so it does not depend on mapping order or device, and
    two parameter sets hash equal exactly when they are bitwise equal. For ``bytes`` (e.g. a
    checkpoint file's contents) it is the plain SHA-256 of the bytes.

    Raises:
        PromotionError: a key is not a string or a value is not array-like.
    """
    digest = hashlib.sha256()
    if isinstance(params, bytes):
        digest.update(params)
        return digest.hexdigest()
    for name in sorted(params, key=str):
        if not isinstance(name, str):
            raise PromotionError(f"policy_hash: parameter names must be strings, got {name!r}")
        array = _as_array(name, params[name])
        header = f"{name}\0{array.dtype.str}\0{array.shape}\0"
        digest.update(header.encode("utf-8"))
        digest.update(array.tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes (1 MiB chunks); equals ``policy_hash(bytes)``."""
    return sha256_regular_file(path, PromotionError, f"{show_path(path)}: file to hash")
