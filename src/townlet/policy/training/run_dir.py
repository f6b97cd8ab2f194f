"""The run directory of a resumable training run: ``run.json`` (what to resume) and its checks.

``run.json`` holds the command (``bc`` or ``ppo``), its resolved arguments, the resolved
training settings and a fingerprint of the input data (the bytes of every input file). Resume
re-reads it, recomputes settings and fingerprint and refuses a directory whose record no
longer matches. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from townlet._atomic import write_text_atomic
from townlet._input_limits import loads_json, read_text, sha256_regular_file, show_path
from townlet.errors import ConfigError

RUN_FILE = "run.json"
RUN_FORMAT = 1


@attrs.frozen(kw_only=True)
class RunRecord:
    """``run.json``: ``command``, its resolved ``args`` (paths absolute), the resolved
    ``settings``, the input ``fingerprint`` (sha256) and the telemetry files' sizes when it
    started (``log_start``, for a resume before the first checkpoint)."""

    command: str
    args: Mapping[str, Any]
    settings: Mapping[str, Any]
    fingerprint: str
    log_start: Mapping[str, int] | None = None
    format: int = RUN_FORMAT

    @property
    def run_id(self) -> str:
        """A digest of the whole record: a checkpoint belongs to the run with its ``run_id``."""
        text = json.dumps(attrs.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _files(path: Path, roots: tuple[Path, ...]) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file())
    elif path.exists():
        yield path
        yield from _referenced(path, roots)


def _referenced(path: Path, roots: tuple[Path, ...]) -> Iterator[Path]:
    # A manifest (JSON) names its sample files (relative to it or to --root); their bytes and
    # their sidecars' are the data too.
    if path.suffix != ".json":
        return
    try:
        where = f"{show_path(path)}: manifest"
        data = loads_json(read_text(path, ConfigError, where), ConfigError, where)
    except ConfigError:
        return  # not a manifest we can read: its own loader reports it
    seen: set[Path] = set()
    for value in _strings(data):
        for base in (path.parent, *roots):
            for name in (value, value.replace(".npz", ".json")):
                candidate = base / name
                if candidate.is_file() and candidate != path and candidate not in seen:
                    seen.add(candidate)
                    yield candidate


def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)


def data_fingerprint(
    paths: Iterable[str | os.PathLike[str] | None],
    *,
    roots: Iterable[str | os.PathLike[str] | None] = (),
) -> str:
    """sha256 over the names and bytes of every input: files, files under folders, and the
    sample files a JSON manifest names (relative to it or to one of ``roots``)."""
    bases = tuple(Path(root) for root in roots if root is not None)
    digest = hashlib.sha256()
    for given in paths:
        if given is None:
            continue
        for file in _files(Path(given), bases):
            digest.update(file.name.encode("utf-8", "surrogateescape") + b"\0")
            label = f"{show_path(file)}: input file"
            digest.update(bytes.fromhex(sha256_regular_file(file, ConfigError, label)))
    return digest.hexdigest()


def plain_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of parsed arguments: paths as ``{"path": absolute}``, callables dropped."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        if callable(value):
            continue
        is_path = isinstance(value, os.PathLike)
        out[key] = {"path": str(Path(value).absolute())} if is_path else value
    return out


def parsed_args(plain: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`plain_args` (paths back as ``Path``)."""
    return {
        key: Path(value["path"]) if isinstance(value, dict) and set(value) == {"path"} else value
        for key, value in plain.items()
    }


def write_run_record(out: str | os.PathLike[str], record: RunRecord) -> Path:
    """Write ``out/run.json`` atomically."""
    text = json.dumps(attrs.asdict(record), indent=2, sort_keys=True) + "\n"
    return write_text_atomic(Path(out) / RUN_FILE, text)


def read_run_record(out: str | os.PathLike[str]) -> RunRecord:
    """``out/run.json``. Raises ``ConfigError`` (one line, naming the file) when it is missing
    or not a run record."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no run record here (start the run with --checkpoint-every)")
    where = f"{show_path(path)}: run record"
    raw = loads_json(read_text(path, ConfigError, where), ConfigError, where)
    try:
        if raw.get("format") != RUN_FORMAT:
            raise ValueError(f"format must be {RUN_FORMAT}, got {raw.get('format')!r}")
        return RunRecord(
            command=str(raw["command"]),
            args=dict(raw["args"]),
            settings=dict(raw["settings"]),
            fingerprint=str(raw["fingerprint"]),
            log_start=None if raw.get("log_start") is None else dict(raw["log_start"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ConfigError(f"{path}: not a run record: {str(exc)[:200]}") from exc


def check_same_run(recorded: RunRecord, current: RunRecord, out: str | os.PathLike[str]) -> None:
    """Refuse to resume when what resume would use differs from what the run recorded."""
    where = Path(out) / RUN_FILE
    if recorded.fingerprint != current.fingerprint:
        raise ConfigError(
            f"{where}: the input data changed since the run started (fingerprint "
            f"{recorded.fingerprint[:12]} recorded, {current.fingerprint[:12]} now); "
            "refusing to resume"
        )
    changed = sorted(
        key
        for key in set(recorded.settings) | set(current.settings)
        if recorded.settings.get(key) != current.settings.get(key)
    )
    if changed or recorded.command != current.command:
        names = ", ".join(changed) or "command"
        raise ConfigError(f"{where}: settings differ from the recorded run ({names}); refusing")
