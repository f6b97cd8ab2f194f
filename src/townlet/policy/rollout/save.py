"""Writing a :class:`RolloutBuffer` as a Townlet capture directory.

Layout (as ``RolloutBuffer.save`` in the reference, ``artifacts/phase4/*/``):

* ``<prefix>_<agent>_<NNN>.npz`` + ``.json`` per agent, numbered from 001 in sample order;
* ``<prefix>_manifest.json``: a JSON list of ``{"sample": <npz>, "meta": <json>}`` (basenames);
* ``<prefix>_metrics.json``: the flat ``{<npz basename>: metrics}`` map.

Atomicity: a new (or empty) directory is written as a hidden sibling and renamed into place,
so readers see all files or none. Into a directory that already holds files, every file is
written atomically and the manifest last, so a reader going through the manifest never sees a
half-written capture (files of an older capture that the new manifest does not list are left).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from townlet._atomic import write_text_atomic
from townlet.errors import RolloutError
from townlet.policy.replay import ReplaySample, save_replay_sample

if TYPE_CHECKING:
    # Only a type: the buffer module imports nothing from here at run time either way.
    from townlet.policy.rollout.buffer import RolloutBuffer

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def metrics_by_file(names: Mapping[str, ReplaySample]) -> dict[str, dict[str, float]]:
    """``{npz basename: the sample's metrics}`` — the flat ``<prefix>_metrics.json`` body."""
    return {name: dict(s.metadata.get("metrics") or {}) for name, s in names.items()}


def sample_stem(prefix: str, agent_id: str, number: int) -> str:
    """``<prefix>_<agent>_<NNN>``, with characters unsafe in file names replaced by ``_``."""
    return f"{prefix}_{_UNSAFE.sub('_', agent_id)}_{number:03d}"


def _write_files(buffer: RolloutBuffer, directory: Path, prefix: str, compress: bool) -> None:
    entries, named = [], {}
    for number, (sample, agent) in enumerate(zip(buffer.samples, buffer.agent_ids, strict=True)):
        stem = sample_stem(prefix, agent, number + 1)
        save_replay_sample(sample, directory / f"{stem}.npz", compress=compress)
        entries.append({"sample": f"{stem}.npz", "meta": f"{stem}.json"})
        named[f"{stem}.npz"] = sample
    write_text_atomic(
        directory / f"{prefix}_metrics.json", json.dumps(metrics_by_file(named), indent=2) + "\n"
    )
    write_text_atomic(directory / f"{prefix}_manifest.json", json.dumps(entries, indent=2) + "\n")


def save_rollout(
    buffer: RolloutBuffer,
    directory: str | os.PathLike[str],
    *,
    prefix: str = "rollout_sample",
    compress: bool = True,
) -> Path:
    """Write ``buffer`` as a capture directory (module docstring) and return its path.

    ``compress`` deflates the npz members. ``ReplayDatasetConfig.from_capture_dir`` reads the
    result when ``prefix`` is the default. Raises :class:`RolloutError` for an empty or unsafe
    prefix or a ``directory`` that is a file.
    """
    if not prefix or _UNSAFE.search(prefix):
        raise RolloutError(f"prefix must be a non-empty file-name stem, got {prefix!r}")
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise RolloutError(f"capture directory {target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        _write_files(buffer, target, prefix, compress)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        _write_files(buffer, staging, prefix, compress)
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; a capture is ordinary data
        os.replace(staging, target)  # replaces a missing or empty directory in one step
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
