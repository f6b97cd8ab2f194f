"""Atomic file writes: readers see the old file or the new one, never a part of either.

Every file townlet writes (samples, sidecars, manifests, telemetry, checkpoints, promotion
state) goes through here: the content goes to a temporary file in the target's folder, is
flushed to disk, and is moved over the target with ``os.replace``. If anything fails, the
temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import os
import tempfile
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
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
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
