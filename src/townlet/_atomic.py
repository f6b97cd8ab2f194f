"""Atomic file writes: readers see the old file or the new one, never a part of either.

Every file townlet writes (samples, sidecars, manifests, telemetry, checkpoints, promotion
state) goes through here: the content goes to a temporary file in the target's folder, is
flushed to disk, and is moved over the target with ``os.replace``. If anything fails, the
temporary file is removed and the target is untouched. A process killed mid-write leaves its
temporary file (``.<name>.<pid>-<random>.tmp``); :func:`remove_stale_temp_files` removes those
of dead processes.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Create or replace ``path`` with what ``write(handle)`` writes to a binary handle.

    Returns ``path`` as a ``Path``. Whatever ``write`` raises (or an ``OSError`` of the file system)
    propagates, the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary data files
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Create or replace ``path`` with ``text`` (UTF-8, ``\\n`` line endings)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))


# Temporary files without a pid (written before pids were added) count as stale after this long:
# no single atomic write takes an hour.
_LEGACY_STALE_SECONDS = 3600.0


def append_durable(path: str | os.PathLike[str], text: str) -> int:
    """Append ``text`` to ``path`` (created if missing) and fsync it; return the file's size
    before, to cut back to. A failed or short write leaves the file as it was."""
    target = Path(path)
    # O_NONBLOCK: a FIFO without a reader fails at once (ENXIO) instead of waiting for one.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(target, flags, 0o644)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (refusing to append to it)", str(path))
        os.set_blocking(fd, True)
        size = info.st_size
        data = text.encode("utf-8")
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write to {target} ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    return size


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that writers of ``path`` killed mid-write left behind.

    A temporary file is stale when the process named in it no longer runs (or, for a file
    without a pid, when it is over an hour old); a live writer's file is kept. Returns the
    files removed; errors removing them are ignored (the next run tries again).
    """
    target = Path(path)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:(\d+)-)?[^.]*\.tmp$")
    removed: list[Path] = []
    try:
        candidates = list(target.parent.glob(f".{glob_escape(target.name)}.*.tmp"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if match is None or not _is_stale(candidate, match.group(1)):
            continue
        try:
            candidate.unlink()
        except OSError:
            continue
        removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _is_stale(candidate: Path, pid: str | None) -> bool:
    if pid is None:
        try:
            return time.time() - candidate.stat().st_mtime > _LEGACY_STALE_SECONDS
        except OSError:
            return False
    return not _process_alive(int(pid))


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError as exc:  # EPERM: it runs, as another user
        return exc.errno == errno.EPERM
    return True
