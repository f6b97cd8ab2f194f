"""Replay manifests: the list of samples a dataset reads (reference §10).

Three layouts are read, from JSON (``.json``/``.jsonl``, one document) or YAML (any other
suffix): a list of entries; a mapping with a ``samples`` list (``capture_rollout.py``); and the
curated list whose entries carry ``metrics``/``accepted``. An entry is ``"x.npz"`` (sidecar:
sibling ``.json``) or ``{"sample": ..., "meta": ...}``.

Relative paths resolve against the manifest's directory, then ``root`` (for manifests written
relative to a repository root), then the current directory; the first that exists wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from townlet._input_limits import (
    MAX_NESTING_DEPTH,
    check_structure,
    loads_json,
    one_line,
    read_text,
    short_repr,
    show_path,
)
from townlet.errors import ReplayDataError

CAPTURE_MANIFEST_NAME = "rollout_sample_manifest.json"
CAPTURE_METRICS_NAME = "rollout_sample_metrics.json"


@attrs.frozen(kw_only=True)
class ManifestEntry:
    """One manifest entry: resolved absolute paths, the curation flag and any inline metrics.

    ``meta`` is None when the entry names no sidecar (the loader then uses the sibling
    ``.json``).
    """

    sample: Path
    meta: Path | None = None
    accepted: bool = True
    metrics: Mapping[str, Any] | None = None


def resolve_manifest_path(
    raw: str | os.PathLike[str], base: Path, root: Path | None = None
) -> Path:
    """Resolve a manifest path: absolute as is; else ``base/p``, ``root/p``, ``cwd/p``,
    first existing; if none exists, ``base/p`` (the loader reports the missing file)."""
    path = Path(raw).expanduser()
    if path.is_absolute():
        return path
    candidates = [base / path]
    if root is not None:
        candidates.append(root / path)
    candidates.append(Path.cwd() / path)
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    return (base / path).resolve()


# Linux's limits on one path component and on a whole path, in bytes.
_NAME_MAX = 255
_PATH_MAX = 4096


def _resolve_entry_path(raw: str, base: Path, root: Path | None, where: str) -> Path:
    """:func:`resolve_manifest_path` for a path read from a manifest, refusing what the OS
    cannot open (NUL bytes, unencodable characters, over-long names, symlink loops) with a
    :class:`ReplayDataError` naming the entry."""
    if not raw:
        raise ReplayDataError(f"{where}: empty sample path")
    try:
        encoded = os.fsencode(raw)
    except UnicodeError:
        raise ReplayDataError(f"{where}: invalid path (an unencodable character)") from None
    if b"\0" in encoded:
        raise ReplayDataError(f"{where}: invalid path (a NUL byte)")
    if len(encoded) > _PATH_MAX or any(len(part) > _NAME_MAX for part in encoded.split(b"/")):
        raise ReplayDataError(
            f"{where}: path or a name in it is longer than {_NAME_MAX} bytes ({short_repr(raw)})"
        )
    try:
        return resolve_manifest_path(raw, base, root)
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop (3.11)
        detail = one_line(f"{type(exc).__name__}: {exc}", limit=200)
        raise ReplayDataError(f"{where}: cannot resolve {short_repr(raw)}: {detail}") from None


def _parse_manifest_file(path: Path, what: str = "Replay manifest") -> Any:
    where = f"{what} {path}"
    if not path.is_file():
        raise ReplayDataError(f"{where} not found")
    text = read_text(path, ReplayDataError, where)
    if path.suffix.lower() in (".json", ".jsonl"):
        return loads_json(text, ReplayDataError, where)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ReplayDataError(
            f"{where} is not valid YAML: {one_line(str(exc), limit=200)}"
        ) from None
    except RecursionError:
        raise ReplayDataError(f"{where}: nested deeper than {MAX_NESTING_DEPTH} levels") from None
    except (ValueError, OverflowError) as exc:
        raise ReplayDataError(f"{where} is not valid YAML: {one_line(str(exc))}") from None
    check_structure(data, ReplayDataError, where)
    return data


def _entry_list(path: Path, payload: Any) -> list[Any]:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        samples = payload.get("samples")
        if not isinstance(samples, list):
            raise ReplayDataError(f"Replay manifest {path} payload missing 'samples' list")
        return samples
    raise ReplayDataError(f"Replay manifest {path} must be a list or mapping with 'samples'")


def _parse_entry(
    path: Path, index: int, raw: Any, root: Path | None
) -> ManifestEntry:  # one entry of the list, already JSON/YAML-decoded
    where = f"Replay manifest {path} entry {index}"
    base = path.parent
    if isinstance(raw, str):
        sample = _resolve_entry_path(raw, base, root, where)
        return ManifestEntry(sample=sample, meta=sample.with_suffix(".json"))
    if not isinstance(raw, dict):
        raise ReplayDataError(f"{where}: manifest entry must be string or mapping")
    if not isinstance(raw.get("sample"), str) or not raw["sample"]:
        raise ReplayDataError(f"{where}: manifest entry missing 'sample' field")
    meta_raw = raw.get("meta")
    if meta_raw is not None and not isinstance(meta_raw, str):
        raise ReplayDataError(f"{where}: 'meta' must be a path string, got {short_repr(meta_raw)}")
    accepted = raw.get("accepted", True)
    if not isinstance(accepted, bool):
        raise ReplayDataError(
            f"{where}: 'accepted' must be true or false, got {short_repr(accepted)}"
        )
    metrics = raw.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise ReplayDataError(f"{where}: 'metrics' must be a mapping, got {short_repr(metrics)}")
    return ManifestEntry(
        sample=_resolve_entry_path(raw["sample"], base, root, where),
        meta=_resolve_entry_path(meta_raw, base, root, where) if meta_raw else None,
        accepted=accepted,
        metrics=metrics,
    )


def read_manifest(
    manifest_path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    include_rejected: bool = False,
) -> tuple[ManifestEntry, ...]:
    """Read a replay manifest into resolved entries, in file order.

    Entries marked ``"accepted": false`` are dropped unless ``include_rejected`` (the reference
    kept them). Raises :class:`ReplayDataError` naming the manifest (and the entry index) for a
    missing or unparsable file, a wrong layout, a malformed entry, or no entries left.
    """
    try:
        path = Path(manifest_path).expanduser().resolve()
        root_path = Path(root).expanduser().resolve() if root is not None else None
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop (3.11)
        detail = one_line(f"{type(exc).__name__}: {exc}", limit=200)
        raise ReplayDataError(f"Replay manifest {show_path(manifest_path)}: {detail}") from None
    raw_entries = _entry_list(path, _parse_manifest_file(path))
    if not raw_entries:
        raise ReplayDataError(f"Replay manifest {path} contains no entries")
    entries = [_parse_entry(path, i, raw, root_path) for i, raw in enumerate(raw_entries)]
    kept = tuple(e for e in entries if e.accepted or include_rejected)
    if not kept:
        raise ReplayDataError(f"Replay manifest {path} has no accepted entries")
    return kept


def read_capture_metrics(metrics_path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Read a capture's ``rollout_sample_metrics.json`` into ``{npz basename: metrics}``.

    Accepts the flat form (``RolloutBuffer.save``) and the ``{"metadata", "samples"}`` form
    (``capture_rollout.py``); the reference read the flat form as empty. A missing file gives
    ``{}``. Raises :class:`ReplayDataError` for unparsable JSON or a non-mapping entry.
    """
    path = Path(metrics_path)
    if not path.is_file():
        return {}
    payload = _parse_manifest_file(path, "Replay metrics")
    if isinstance(payload, dict) and isinstance(payload.get("samples"), dict):
        payload = payload["samples"]
    if not isinstance(payload, dict):
        raise ReplayDataError(f"Replay metrics {path} must map sample names to metrics")
    out: dict[str, dict[str, float]] = {}
    for name, metrics in payload.items():
        if name == "metadata":
            continue
        if not isinstance(metrics, dict):
            raise ReplayDataError(f"Replay metrics {path} entry {name!r} must be a mapping")
        out[str(name)] = {str(k): float(v) for k, v in metrics.items() if _numeric(v)}
    return out


def _numeric(value: object) -> bool:
    # JSON integers are bounded by 2**64 at parse time, so float() cannot overflow here.
    return isinstance(value, int | float) and not isinstance(value, bool)
