"""How a capture directory is committed: readers and killed runs never see a mix of two captures.

A capture is written into a private staging directory, then put in place in one step:

* **swap** (the usual case): the staging directory is a hidden sibling of the target,
  ``.<name>.capture-XXXXXXXX.tmp``. Files of the target that do not belong to this prefix's
  capture (a user's notes, another prefix's capture) are hard-linked into it, then it takes
  the target's place — by an atomic exchange of the two directories where the OS offers one
  (Linux ``renameat2(RENAME_EXCHANGE)``), otherwise by two renames through
  ``.<name>.capture-XXXXXXXX.old``. A run killed at any moment leaves the old capture whole
  under the target's name or the new one, never a mix.
* **in place** (the parent cannot be written, e.g. ``--out`` is a mount point): the staging
  directory is ``<target>/.<prefix>.capture-XXXXXXXX.tmp``; the old manifest is removed
  *first*, the new files are moved in, files of the old capture that the new one does not
  have are removed, and the new manifest comes last. A run killed in between leaves no
  manifest, so no reader takes the directory for a complete capture.

One capture at a time per target: an exclusive ``flock`` on ``.<name>.capture.lock`` (a
sibling of the target, or inside it when in place) held from before the capture runs until the
commit. Whoever holds it removes the staging and swap leftovers of dead runs (the kernel
releases a dead process's lock; nothing else removes them), and removes the lock file itself
when done. The loser of two captures started at once gets :class:`RolloutError` at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from townlet.errors import RolloutError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, the rest still holds
    fcntl = None  # type: ignore[assignment]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_held: dict[Path, int] = {}  # lock path -> this process's holding count
_held_guard = threading.Lock()
# Staging directories this process is filling: a capture may prepare its staging directory
# before the commit (to create its files while it steps), and re-entering the lock must not
# take it for a dead run's leftover.
_in_use: set[Path] = set()


def staging_pattern(stem: str) -> re.Pattern[str]:
    """Names of the leftovers of ``stem``'s commits: staging and swap directories (and the
    ``.<stem>.XXXXXXXX.tmp`` staging directories of earlier townlet versions)."""
    name = re.escape(stem)
    return re.compile(rf"^\.{name}\.(capture-[A-Za-z0-9_]+\.(tmp|old)|[A-Za-z0-9_]{{8}}\.tmp)$")


def output_error(target: Path, exc: OSError) -> RolloutError:
    """The one-line error for an output location that cannot be written."""
    reason = exc.strerror or str(exc)
    return RolloutError(f"capture directory {target} cannot be written: {reason}")


def remove_leftovers(folder: Path, stem: str) -> list[str]:
    """Remove ``stem``'s staging leftovers in ``folder`` (call with the lock held); returns
    their names."""
    pattern = staging_pattern(stem)
    try:
        names = [n for n in os.listdir(folder) if pattern.match(n)]
    except OSError:
        return []
    with _held_guard:
        names = [n for n in names if (folder / n).absolute() not in _in_use]
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return names


def _open_lock(path: Path) -> int:
    """An fd holding the exclusive lock of ``path`` (a file that still has that name)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise
        except BaseException:
            os.close(fd)
            raise
        # The holder before us may have removed the file after we opened it: retry on the new one.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def lock_path(target: Path, *, inside: bool = False) -> Path:
    """The lock file of captures into ``target``."""
    folder = target if inside else target.parent
    return folder / f".{target.name}.capture.lock"


@contextlib.contextmanager
def capture_lock(target: Path, *, inside: bool = False) -> Iterator[Path]:
    """Hold the exclusive lock of captures into ``target`` (re-entrant within a process).

    Raises :class:`RolloutError` when another capture holds it, or when the lock cannot be
    created (the output location is not writable)."""
    path = lock_path(target, inside=inside).absolute()
    with _held_guard:
        if path in _held:
            _held[path] += 1
            fd = None
        else:
            fd = _acquire(path, target)
            _held[path] = 1
    try:
        yield path
    finally:
        with _held_guard:
            _held[path] -= 1
            if _held[path] == 0:
                del _held[path]
                if fd is not None:
                    path.unlink(missing_ok=True)  # while still held: no one else has it
                    os.close(fd)


def _acquire(path: Path, target: Path) -> int:
    if fcntl is None:  # pragma: no cover
        return os.open(os.devnull, os.O_RDONLY)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _open_lock(path)
    except BlockingIOError:
        raise RolloutError(
            f"capture directory {target} is being written by another capture "
            f"(lock {path.name} is held); wait for it to finish or choose another directory"
        ) from None
    except OSError as exc:
        raise output_error(target, exc) from exc


def make_staging(folder: Path, stem: str) -> Path:
    """A new private staging directory ``.<stem>.capture-XXXXXXXX.tmp`` in ``folder``, which
    :func:`remove_leftovers` leaves alone until :func:`drop_staging`."""
    path = Path(tempfile.mkdtemp(prefix=f".{stem}.capture-", suffix=".tmp", dir=folder))
    with _held_guard:
        _in_use.add(path.absolute())
    return path


def drop_staging(path: Path) -> None:
    """Remove the staging directory ``path`` (whatever it holds; nothing if it was moved)."""
    shutil.rmtree(path, ignore_errors=True)
    with _held_guard:
        _in_use.discard(path.absolute())


def is_staging(path: Path, folder: Path, stem: str) -> bool:
    """True when ``path`` is a staging directory of ``stem`` in ``folder`` this process made
    and has not dropped."""
    with _held_guard:
        live = path.absolute() in _in_use
    return live and path.parent == folder and bool(staging_pattern(stem).match(path.name))


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directory entries atomically; False where the OS cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):  # no C library to load by that name (not POSIX)
        return False
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def fsync_dir(folder: Path) -> None:
    """Flush a directory's entries to disk (where the OS allows opening directories)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def swap_into_place(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` directory at ``target`` (missing, empty or a directory),
    removing what was there; a kill at any moment leaves the old or the new directory."""
    # mkdtemp makes 0700; a capture is ordinary data, or keeps the mode of the one it replaces.
    mode = stat.S_IMODE(target.stat().st_mode) if target.is_dir() else 0o755
    os.chmod(staging, mode)
    fsync_dir(staging)
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)  # now holds the old capture
    else:
        old = staging.with_name(staging.name.removesuffix(".tmp") + ".old")
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old)
    fsync_dir(target.parent)


def carry_over(target: Path, staging: Path, keep: set[str]) -> None:
    """Hard-link (or copy) the entries of ``target`` named in ``keep`` into ``staging``."""
    for name in sorted(keep):
        source, dest = target / name, staging / name
        if source.is_symlink():
            os.symlink(os.readlink(source), dest)
        elif source.is_dir():
            shutil.copytree(source, dest, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(source), str(dest))


def _link_or_copy(source: str, dest: str) -> str:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
    return dest
