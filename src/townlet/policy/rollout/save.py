"""Writing a :class:`RolloutBuffer` as a Townlet capture directory.

Layout (as ``RolloutBuffer.save`` in the reference, ``artifacts/phase4/*/``):

* ``<prefix>_<agent>_<NNN>.npz`` + ``.json`` per agent, numbered from 001 in sample order;
* ``<prefix>_manifest.json``: a JSON list of ``{"sample": <npz>, "meta": <json>}`` (basenames);
* ``<prefix>_metrics.json``: the flat ``{<npz basename>: metrics}`` map.

The samples are written by a pool of threads (:mod:`~townlet.policy.rollout.writer_pool`) into
a staging directory that is then committed in one step (:mod:`~townlet.policy.rollout.commit`):
a reader, or a run killed at any moment, sees the old capture or the new one, never a mix.
Files in the directory that belong to no capture of this prefix are kept.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from townlet._input_limits import loads_json, read_text, show_path
from townlet.errors import CaptureWriteError, ReplayDataError, RolloutError
from townlet.policy.replay import ReplaySample
from townlet.policy.replay.npz_write import check_compress_level
from townlet.policy.rollout.commit import (
    capture_lock,
    carry_over,
    drop_staging,
    fsync_dir,
    is_staging,
    lock_path,
    make_staging,
    output_error,
    remove_leftovers,
    staging_pattern,
    swap_into_place,
)
from townlet.policy.rollout.writer_pool import default_workers, write_new_file, write_samples

if TYPE_CHECKING:
    # Only a type: the buffer module imports nothing from here at run time either way.
    from townlet.policy.rollout.buffer import RolloutBuffer

# Chosen by measurement (docs/capture.md, "Compression"): on the town's mostly-zero maps level 1
# deflates ~2× faster than 6 for files ~2× larger, both ~50× smaller than stored.
DEFAULT_COMPRESS_LEVEL = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# An OSError with one of these means the output location is unusable (exit 2), not a failed run.
_LOCATION_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}
_LOCATION_ERRORS |= {errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST}


SampleWriter = Callable[[Path, list[str]], None]
"""Writes ``<stem>.npz`` and ``<stem>.json`` of every sample (one stem each, in sample order)
into a folder and flushes them to disk."""


def metrics_by_file(names: Mapping[str, ReplaySample]) -> dict[str, dict[str, float]]:
    """``{npz basename: the sample's metrics}`` — the flat ``<prefix>_metrics.json`` body."""
    return {name: dict(s.metadata.get("metrics") or {}) for name, s in names.items()}


def sample_stem(prefix: str, agent_id: str, number: int) -> str:
    """``<prefix>_<agent>_<NNN>``, with characters unsafe in file names replaced by ``_``."""
    return f"{prefix}_{_UNSAFE.sub('_', agent_id)}_{number:03d}"


def check_prefix(prefix: object) -> str:
    """``prefix`` if it is a non-empty file-name stem; else :class:`RolloutError`."""
    if not isinstance(prefix, str) or not prefix or _UNSAFE.search(prefix):
        raise RolloutError(f"prefix must be a non-empty file-name stem, got {prefix!r}")
    return prefix


def check_workers(workers: object) -> int:
    """``workers`` if it is a thread count from 0 to 64; else :class:`RolloutError`."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= 64:
        raise RolloutError(f"workers must be an int from 0 to 64, got {workers!r}")
    return workers


def resolve_level(compress: bool, compress_level: int | None) -> int | None:
    """The deflate level to write with (None: stored members). Raises :class:`RolloutError`
    for a level outside 0–9 or a level given with ``compress=False``."""
    if not compress:
        if compress_level is not None:
            raise RolloutError("compress_level applies to compressed captures (compress=True)")
        return None
    if compress_level is None:
        return DEFAULT_COMPRESS_LEVEL
    try:
        return check_compress_level(compress_level)
    except ValueError as exc:
        raise RolloutError(str(exc)) from None


def check_target(directory: str | os.PathLike[str]) -> Path:
    """``directory`` as a ``Path``; raises :class:`RolloutError` when it is an existing
    non-directory or its parent cannot be created."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise RolloutError(f"capture directory {target} exists and is not a directory")
    blocking = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise RolloutError(f"capture directory {target} cannot be written: {blocking} is a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(target, exc) from exc
    return target


def writes_in_place(target: Path) -> bool:
    """True when ``target`` is a directory that cannot be swapped for a sibling: its parent is
    not writable or on another file system (a mount point), or it holds the working directory
    (which would be left in the removed old directory); see :mod:`.commit`."""
    if not target.is_dir():
        return False
    cwd = Path.cwd()
    if target.parent == target or target == cwd or target in cwd.parents:
        return True
    parent = target.parent
    if target.stat().st_dev != parent.stat().st_dev:
        return True
    return not os.access(parent, os.W_OK | os.X_OK) and os.access(target, os.W_OK | os.X_OK)


@contextlib.contextmanager
def capture_target(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Reserve ``directory`` for one capture: check it, take its lock (re-entrant; a second
    capture into it raises :class:`RolloutError` at once) and remove the leftovers of dead
    runs. Wrap a capture and its :func:`save_rollout` in it to fail before capturing."""
    target = check_target(directory)
    # Absolute and normalised ("." has no name to stage beside); a link is replaced behind it.
    target = target.resolve() if target.is_symlink() else Path(os.path.abspath(target))
    inside = writes_in_place(target)
    with capture_lock(target, inside=inside):
        if not inside:
            remove_leftovers(target.parent, target.name)
        yield target


def _owned_names(target: Path, prefix: str) -> set[str]:
    """Entries of ``target`` that belong to the capture of ``prefix`` written there before (its
    manifest, metrics, listed files, numbered samples no other manifest lists, stale temps)."""
    try:
        names = set(os.listdir(target))
    except OSError:
        return set()
    manifest = f"{prefix}_manifest.json"
    numbered = re.compile(rf"^{re.escape(prefix)}_.+_\d{{3,}}\.(npz|json)$")
    temp = re.compile(rf"^\.{re.escape(prefix)}_.*\.tmp$")
    others: set[str] = set()
    for name in names:
        if name.endswith("_manifest.json") and name != manifest:
            others |= _listed(target / name)
    owned = {manifest, f"{prefix}_metrics.json"} | _listed(target / manifest)
    owned |= {n for n in names if numbered.match(n) and n not in others}
    owned |= {n for n in names if temp.match(n) or staging_pattern(prefix).match(n)}
    return owned & names


def _listed(manifest: Path) -> set[str]:
    """Basenames a capture manifest lists (empty when it is not one)."""
    try:
        where = f"{show_path(manifest)}: capture manifest"
        entries = loads_json(read_text(manifest, ReplayDataError, where), ReplayDataError, where)
    except ReplayDataError:
        return set()  # not a readable manifest (a FIFO is refused, not waited on)
    listed: set[str] = set()
    for entry in entries if isinstance(entries, list) else []:
        values = entry.values() if isinstance(entry, dict) else [entry]
        listed |= {v for v in values if isinstance(v, str) and os.path.basename(v) == v}
    return listed


def _write_capture(
    buffer: RolloutBuffer, folder: Path, prefix: str, writer: SampleWriter
) -> list[str]:
    """Write every file of the capture into ``folder``; returns their names, manifest last."""
    stems = [sample_stem(prefix, a, n + 1) for n, a in enumerate(buffer.agent_ids)]
    writer(folder, stems)
    entries = [{"sample": f"{s}.npz", "meta": f"{s}.json"} for s in stems]
    metrics = metrics_by_file(
        dict(zip((e["sample"] for e in entries), buffer.samples, strict=True))
    )
    texts = {
        f"{prefix}_metrics.json": json.dumps(metrics, indent=2) + "\n",
        f"{prefix}_manifest.json": json.dumps(entries, indent=2) + "\n",
    }
    for name, text in texts.items():
        write_new_file(folder / name, functools.partial(_put, text.encode("utf-8")))
    return [n for s in stems for n in (f"{s}.npz", f"{s}.json")] + list(texts)


def _put(data: bytes, handle: IO[bytes]) -> None:
    handle.write(data)


def _staging(folder: Path, stem: str, prepared: Path | None) -> Path:
    """``prepared`` when it is this commit's staging directory (see :func:`prepare_staging`),
    else a new one (``prepared`` is removed: the target changed since it was made)."""
    if prepared is not None:
        if is_staging(prepared, folder, stem):
            return prepared
        drop_staging(prepared)
    return make_staging(folder, stem)


def _commit_swap(
    buffer: RolloutBuffer,
    target: Path,
    prefix: str,
    writer: SampleWriter,
    prepared: Path | None = None,
) -> None:
    staging = _staging(target.parent, target.name, prepared)
    try:
        written = _write_capture(buffer, staging, prefix, writer)
        if target.is_dir():
            lock = lock_path(target, inside=True).name
            keep = set(os.listdir(target)) - _owned_names(target, prefix) - set(written)
            carry_over(target, staging, {n for n in keep if n != lock})
        swap_into_place(staging, target)
    except BaseException:
        drop_staging(staging)
        raise
    drop_staging(staging)  # its name is free again (or holds the old capture, removed)


def _commit_in_place(
    buffer: RolloutBuffer,
    target: Path,
    prefix: str,
    writer: SampleWriter,
    prepared: Path | None = None,
) -> None:
    remove_leftovers(target, prefix)
    staging = _staging(target, prefix, prepared)
    try:
        written = _write_capture(buffer, staging, prefix, writer)
        old = _owned_names(target, prefix) - {staging.name}
        manifest = written[-1]
        (target / manifest).unlink(missing_ok=True)  # first: no reader trusts a mix
        fsync_dir(target)
        for name in written[:-1]:
            os.replace(staging / name, target / name)
        for name in sorted(old - set(written)):
            (target / name).unlink(missing_ok=True)
        os.replace(staging / manifest, target / manifest)
        fsync_dir(target)
    finally:
        drop_staging(staging)


def save_rollout(
    buffer: RolloutBuffer,
    directory: str | os.PathLike[str],
    *,
    prefix: str = "rollout_sample",
    compress: bool = True,
    compress_level: int | None = None,
    workers: int | None = None,
) -> Path:
    """Write ``buffer`` as a capture directory (module docstring) and return its path.

    ``compress`` deflates the npz members at ``compress_level`` (0–9, default
    :data:`DEFAULT_COMPRESS_LEVEL`; numpy's loader reads every level). ``workers`` writer
    threads (default :func:`~.writer_pool.default_workers`; 0 writes in the calling thread;
    the files are the same). ``ReplayDatasetConfig.from_capture_dir`` reads the result when
    ``prefix`` is the default.

    Raises :class:`RolloutError` for an empty or unsafe prefix, a bad level or worker count, a
    ``directory`` that is a file or cannot be written, or one another capture is writing;
    :class:`~townlet.errors.CaptureWriteError` when writing fails midway (e.g. a full disk).
    Either way nothing of the new capture is left and an older capture there is intact.
    """
    prefix = check_prefix(prefix)
    level = resolve_level(compress, compress_level)
    count = default_workers() if workers is None else check_workers(workers)

    def writer(folder: Path, stems: list[str]) -> None:
        jobs = zip(stems, buffer.samples, strict=True)
        write_samples(folder, jobs, level=level, workers=count)

    return commit_capture(buffer, directory, prefix, writer)


def write_error(target: Path, exc: OSError) -> RolloutError | CaptureWriteError:
    """The one-line error for ``exc`` raised while writing a capture into ``target``: an
    unusable location (:class:`RolloutError`, exit 2) or a failed write
    (:class:`~townlet.errors.CaptureWriteError`, exit 1)."""
    if exc.errno in _LOCATION_ERRORS:
        return output_error(target, exc)
    reason = exc.strerror or str(exc)
    return CaptureWriteError(f"capture not saved to {target}: {reason}")


def prepare_staging(directory: str | os.PathLike[str], prefix: str) -> Path:
    """The staging directory a later ``commit_capture(…, staging=…)`` of a capture into
    ``directory`` with ``prefix`` will fill, made now (e.g. to create its files while the
    capture runs). Hold ``capture_target(directory)`` from before this call until the commit;
    remove it with :func:`~.commit.drop_staging` if the capture is not committed."""
    with capture_target(directory) as target:
        if writes_in_place(target):
            return make_staging(target, prefix)
        return make_staging(target.parent, target.name)


def commit_capture(
    buffer: RolloutBuffer,
    directory: str | os.PathLike[str],
    prefix: str,
    writer: SampleWriter,
    *,
    staging: Path | None = None,
) -> Path:
    """Write ``buffer`` as a capture directory with ``writer`` writing its samples' files, and
    commit it; the errors and guarantees of :func:`save_rollout` (``prefix`` already checked).
    ``staging``: a directory from :func:`prepare_staging` to write into (``writer`` then gets
    it as its folder), used only if it is still where this commit stages."""
    with capture_target(directory) as target:  # the link's target when ``directory`` is one
        commit = _commit_in_place if writes_in_place(target) else _commit_swap
        try:
            commit(buffer, target, prefix, writer, staging)
        except OSError as exc:
            raise write_error(target, exc) from exc
    return Path(directory)
