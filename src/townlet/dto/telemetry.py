"""PPO telemetry files: JSONL, one object per epoch, versions 1.0, 1.1, 1.2 and 1.3.

1.0–1.2 are the reference's versions; 1.3 is townlet's: 1.2 plus the extension keys
(``bc_coef``, ``loss_bc``, ``critic_warmup``, ``episode_return_mean``,
``episode_length_mean``), which the reference's typed DTO rejects. Reading accepts a line of any
of the four versions and gives a :class:`~townlet.dto.policy.PPOTrainingResult` (keys a version
does not have are None). Writing produces exactly the key set of the requested version, in the
reference's dump order (core, health, 1.1, social, anneal, baseline, extensions, dynamic
extras):

* always: the 15 core keys (``telemetry_version`` set to the written version);
* 1.1 and later: the twelve 1.1 keys (``null`` when the record lacks them — an up-converted
  1.0 record), and each of the six social counters that has a value;
* 1.2 and later: the twelve ``anneal_*`` keys as a block when any of them is set;
* 1.3: each townlet extension that has a value;
* any version: each health key and each ``baseline_*`` key that has a value, and the dynamic
  ``conflict.*``/``*_events`` keys.

Without a version the writer labels each line by what it holds (:func:`line_version`): a
record with an extension value becomes a 1.3 line, any other keeps its own version — so
training on replay data writes 1.2 lines the reference reads, and BC-regularised or online
runs write 1.3. A line read at its own version is written back to the same JSON object, and
down-conversion drops the newer keys. A 1.2 line that carries extension keys (written by
townlet before 1.3 existed) is still read, and is written back as 1.3.

Files are replaced atomically (temp file + ``os.replace``); appends write all new lines with
one ``write`` and ``fsync``, and undo a failed write (see :func:`write_telemetry`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from townlet._atomic import append_durable, write_text_atomic
from townlet._input_limits import MAX_LINE_BYTES, loads_json, open_regular, show_path
from townlet.dto.convert import from_dict, to_dict
from townlet.dto.policy import (
    EXTENSION_FIELDS,
    EXTENSION_TELEMETRY_VERSION,
    TELEMETRY_VERSIONS,
    PPOTrainingResult,
    is_extra_key,
    unknown_field_message,
)
from townlet.errors import DTOValidationError, TelemetryError

CORE_KEYS: tuple[str, ...] = (
    "epoch",
    "updates",
    "transitions",
    "loss_policy",
    "loss_value",
    "loss_entropy",
    "loss_total",
    "clip_fraction",
    "adv_mean",
    "adv_std",
    "grad_norm",
    "kl_divergence",
    "telemetry_version",
    "lr",
    "steps",
)
HEALTH_KEYS: tuple[str, ...] = (
    "adv_zero_std_batches",
    "adv_min_std",
    "clip_triggered_minibatches",
    "clip_fraction_max",
)
V11_KEYS: tuple[str, ...] = (
    "epoch_duration_sec",
    "data_mode",
    "cycle_id",
    "batch_entropy_mean",
    "batch_entropy_std",
    "grad_norm_max",
    "kl_divergence_max",
    "reward_advantage_corr",
    "rollout_ticks",
    "log_stream_offset",
    "queue_conflict_events",
    "queue_conflict_intensity_sum",
)
SOCIAL_KEYS: tuple[str, ...] = (
    "shared_meal_events",
    "late_help_events",
    "shift_takeover_events",
    "chat_success_events",
    "chat_failure_events",
    "chat_quality_mean",
)
ANNEAL_KEYS: tuple[str, ...] = (
    "anneal_cycle",
    "anneal_stage",
    "anneal_dataset",
    "anneal_bc_accuracy",
    "anneal_bc_threshold",
    "anneal_bc_passed",
    "anneal_loss_baseline",
    "anneal_queue_baseline",
    "anneal_intensity_baseline",
    "anneal_loss_flag",
    "anneal_queue_flag",
    "anneal_intensity_flag",
)
BASELINE_KEYS: tuple[str, ...] = (
    "baseline_sample_count",
    "baseline_reward_mean",
    "baseline_reward_sum",
    "baseline_reward_sum_mean",
    "baseline_log_prob_mean",
)
EXTENSION_KEYS: tuple[str, ...] = EXTENSION_FIELDS


def parse_version(version: str | float) -> float:
    """``"1.1"``/``1.1``/``1`` → 1.1/1.1/1.0; anything else raises :class:`TelemetryError`."""
    try:
        value = float(version)
    except (TypeError, ValueError):
        value = math.nan
    for known in TELEMETRY_VERSIONS:
        if value == known:
            return known
    raise TelemetryError(
        f"unsupported telemetry version {version!r} (expected 1.0, 1.1, 1.2 or 1.3)"
    )


def version_keys(version: float) -> frozenset[str]:
    """Every declared key a line of ``version`` may hold (dynamic ``conflict.*`` and
    ``*_events`` keys aside)."""
    keys = set(CORE_KEYS + HEALTH_KEYS + BASELINE_KEYS)
    if version >= 1.1:
        keys |= set(V11_KEYS + SOCIAL_KEYS)
    if version >= 1.2:
        keys |= set(ANNEAL_KEYS)
    if version >= EXTENSION_TELEMETRY_VERSION:
        keys |= set(EXTENSION_KEYS)
    return frozenset(keys)


def line_version(record: PPOTrainingResult) -> float:
    """The version a line of ``record`` is labelled with when none is asked for: 1.3 when it
    has an extension value (a 1.2 reader would refuse the line), else its own version."""
    if any(getattr(record, key) is not None for key in EXTENSION_KEYS):
        return max(record.telemetry_version, EXTENSION_TELEMETRY_VERSION)
    return record.telemetry_version


def telemetry_line(record: PPOTrainingResult, version: str | float | None = None) -> dict[str, Any]:
    """The telemetry object of ``record`` at ``version`` (default :func:`line_version`; see
    the module docstring)."""
    target = line_version(record) if version is None else parse_version(version)
    full = to_dict(record)
    full["telemetry_version"] = target
    out: dict[str, Any] = {key: full[key] for key in CORE_KEYS}
    out.update({key: full[key] for key in HEALTH_KEYS if full[key] is not None})
    if target >= 1.1:
        out.update({key: full[key] for key in V11_KEYS})
        out.update({key: full[key] for key in SOCIAL_KEYS if full[key] is not None})
    if target >= 1.2 and any(full[key] is not None for key in ANNEAL_KEYS):
        out.update({key: full[key] for key in ANNEAL_KEYS})
    out.update({key: full[key] for key in BASELINE_KEYS if full[key] is not None})
    if target >= EXTENSION_TELEMETRY_VERSION:
        out.update({key: full[key] for key in EXTENSION_KEYS if full.get(key) is not None})
    out.update(record.extras)
    return out


def record_from_line(obj: Mapping[str, Any]) -> PPOTrainingResult:
    """Structure one telemetry object of any version; raises :class:`TelemetryError` (no location).

    Besides the record's own bounds, the line must have the core keys, a known version, every
    1.1 key when it claims 1.1 or later, the anneal keys as a complete block, and no key of a
    later version than it claims.
    """
    missing = sorted(set(CORE_KEYS) - set(obj))
    if missing:
        hint = " (not a PPO telemetry line?)" if "telemetry_version" in missing else ""
        raise TelemetryError(f"missing required telemetry keys: {missing}{hint}")
    version = parse_version(obj["telemetry_version"])
    allowed = version_keys(version)
    if version == 1.2:
        allowed |= set(EXTENSION_KEYS)  # townlet's 1.2 lines before 1.3 existed
    for key in obj:
        if key in allowed or (isinstance(key, str) and is_extra_key(key)):
            continue
        if key in version_keys(EXTENSION_TELEMETRY_VERSION):
            raise TelemetryError(
                f"telemetry_version {version} line has a later version's key {key!r}"
            )
        raise TelemetryError(unknown_field_message(PPOTrainingResult.__name__, key))
    if version >= 1.1 and (absent := [key for key in V11_KEYS if key not in obj]):
        raise TelemetryError(f"telemetry_version {version} line is missing keys: {absent}")
    present = [key for key in ANNEAL_KEYS if key in obj]
    if present and len(present) != len(ANNEAL_KEYS):
        absent = [key for key in ANNEAL_KEYS if key not in obj]
        raise TelemetryError(f"incomplete anneal block: missing {absent}")
    data = dict(obj)
    for key in HEALTH_KEYS:
        data.setdefault(key, None)  # old logs lack them; keep them absent on write
    try:
        return from_dict(PPOTrainingResult, data)
    except DTOValidationError as exc:
        raise TelemetryError(str(exc)) from None


def iter_json_lines(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; :class:`TelemetryError` names
    ``path:line`` for invalid JSON or UTF-8, a non-object or a line over
    ``MAX_LINE_BYTES``, and ``path`` for a missing file or one that is not a regular file."""
    if not path.exists() and not path.is_symlink():
        raise TelemetryError(f"{path}: telemetry file not found")
    fd = open_regular(path, TelemetryError, f"{show_path(path)}: telemetry file")
    with os.fdopen(fd, "rb") as handle:
        for number, raw in enumerate(_bounded_lines(handle, path), start=1):
            if not raw.strip():
                continue
            obj = loads_json(raw, TelemetryError, f"{path}:{number}", syntax=": invalid JSON")
            if not isinstance(obj, dict):
                kind = type(obj).__name__
                raise TelemetryError(f"{path}:{number}: expected JSON object, got {kind}")
            yield number, obj


def _bounded_lines(handle: IO[bytes], path: Path) -> Iterable[bytes]:
    # readline(limit) never holds more than one line of at most MAX_LINE_BYTES in memory.
    number = 0
    while line := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise TelemetryError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes")
        yield line


def read_telemetry(path: str | Path) -> list[PPOTrainingResult]:
    """Read a telemetry JSONL file of versions 1.0–1.3 into records (one per non-blank line).

    Raises :class:`TelemetryError` as ``path:line: reason`` for a malformed line and
    ``path: no telemetry records found`` for a file without records.
    """
    source = Path(path)
    records = []
    for number, obj in iter_json_lines(source):
        try:
            records.append(record_from_line(obj))
        except TelemetryError as exc:
            raise TelemetryError(f"{source}:{number}: {exc}") from None
    if not records:
        raise TelemetryError(f"{source}: no telemetry records found")
    return records


def dumps_line(obj: Mapping[str, Any]) -> str:
    """One JSONL line as the reference wrote it: default separators, unsorted keys, newline."""
    return json.dumps(obj) + "\n"


def _check_appendable(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    # Only a regular file is appended to: opening a FIFO for writing would wait for a reader.
    fd = open_regular(path, TelemetryError, f"{show_path(path)}: telemetry file")
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) != b"\n":
            raise TelemetryError(
                f"{path}: the last line has no newline (an interrupted write?); "
                "repair or remove it before appending"
            )


def write_telemetry(
    records: Iterable[PPOTrainingResult],
    path: str | Path,
    *,
    version: str | float | None = None,
    append: bool = False,
) -> int:
    """Write ``records`` as telemetry JSONL at ``version`` (default: each line labelled by
    :func:`line_version`, 1.2 unless it carries extension keys); return the number of lines
    written.

    Without ``append`` the new file is written to a temp file beside ``path``, fsynced, and moved
    over ``path`` with ``os.replace``, so readers see the old file or the new one, never a part.
    With ``append`` all new lines go out in one ``write`` on an ``O_APPEND`` descriptor, then
    ``fsync``; if the write fails the file is truncated back to its old length. Appending to a
    file whose last line lacks its newline raises :class:`TelemetryError`.
    """
    target = Path(path)
    text = "".join(dumps_line(telemetry_line(r, version)) for r in records)
    target.parent.mkdir(parents=True, exist_ok=True)
    if append:
        _append_text(target, text)
    else:
        write_text_atomic(target, text)
    return text.count("\n")


def _append_text(target: Path, text: str) -> None:
    _check_appendable(target)
    append_durable(target, text)


def convert_telemetry(
    source: str | Path, *, version: str | float, output: str | Path | None = None
) -> list[dict[str, Any]]:
    """Read ``source`` (any version) and return its lines at ``version``; also write them to
    ``output`` (atomically) when given. Raises :class:`TelemetryError` for unreadable input."""
    target_version = parse_version(version)
    records = read_telemetry(source)
    lines = [telemetry_line(record, target_version) for record in records]
    if output is not None:
        write_telemetry(records, output, version=target_version)
    return lines
