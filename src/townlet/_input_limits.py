"""The input boundary: reading untrusted files and text within documented limits.

Every loader (config, sidecar, manifest, telemetry, checkpoint header, promotion state, run
state, ``--summary``/``--baseline`` files) reads through here, so that hostile or damaged input
ends in one of townlet's own error types (a ``TownletInputError`` subclass the caller names)
with a one-line message of bounded length — never a ``RecursionError``, ``MemoryError``,
``UnicodeDecodeError``, an integer-conversion ``ValueError``, a hang on a FIFO, or a message
that echoes megabytes of input. The limits are listed in ``docs/errors.md``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import reprlib
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from townlet.errors import TownletInputError

# Text files townlet reads whole (configs, sidecars, manifests, run/promotion state) are small;
# 256 MiB leaves room for a manifest of millions of entries and refuses /dev/zero-like input.
MAX_TEXT_FILE_BYTES = 256 * 1024 * 1024
# One telemetry line is a few hundred bytes; a 16 MiB "line" is damage, not data.
MAX_LINE_BYTES = 16 * 1024 * 1024
# JSON/YAML/TOML nesting townlet's own files use is < 6 levels; 64 is generous and far from
# the interpreter's recursion limit in every recursive consumer (cattrs, repr, yaml).
MAX_NESTING_DEPTH = 64
# Containers + scalars in one document after YAML aliases are expanded (a "billion laughs"
# document is a few hundred bytes that expand to 10^9 nodes); the walk stops at 1M nodes.
MAX_DOCUMENT_NODES = 1_000_000
# Integers in JSON are bounded by the widest integer townlet stores (uint64 seeds).
MAX_JSON_INT = 2**64 - 1
MAX_INT_DIGITS = 20
# Error messages are one line of at most this many characters.
MAX_MESSAGE_CHARS = 500

ErrorType = Callable[[str], TownletInputError]

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def short_repr(value: object) -> str:
    """``repr(value)`` cut to about 80 characters and 3 levels (safe for alias bombs)."""
    return one_line(_REPR.repr(value), limit=120)


def one_line(message: str, *, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` on one line (runs of whitespace become one space), cut to ``limit`` chars."""
    text = " ".join(message[: limit * 4].split())
    if len(text) > limit or len(message) > limit * 4:
        return text[: limit - 1].rstrip() + "…"
    return text


def path_problem(exc: BaseException) -> str:
    """What an error raised on opening a path means, as the end of "<path>: <what> ..."."""
    if isinstance(exc, ValueError):  # embedded NUL byte, or a path the OS cannot encode
        return "has an invalid path (a NUL byte or an unencodable character)"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    reasons = {
        errno.ELOOP: "too many levels of symbolic links",
        errno.ENAMETOOLONG: "file name too long",
        errno.EACCES: "permission denied",
        errno.ENOTDIR: "a parent of the path is not a directory",
    }
    if isinstance(exc, OSError):
        reason = reasons.get(exc.errno or 0) or exc.strerror or type(exc).__name__
        return f"cannot be read ({reason})"
    return f"cannot be read ({type(exc).__name__})"


def open_regular(path: Path, error: ErrorType, label: str) -> int:
    """Open ``path`` for reading and return the descriptor; refuse anything but a regular file.

    ``O_NONBLOCK`` makes opening a FIFO return at once, so a FIFO or device is refused before
    a single byte is read (no hang). Raises ``error`` whose message starts with ``label``
    (which names the file, e.g. ``"cfg.toml: config file"``).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        raise error(f"{label} {path_problem(exc)}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{label} is not a regular file ({_kind(mode)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device")):
        if test(mode):
            return name
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a socket or special file"


def show_path(path: str | os.PathLike[str]) -> str:
    """The path as it may appear in a message: printable, one line, bounded."""
    text = os.fspath(path).encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return one_line(text.replace("\0", "\\0"), limit=300)


def read_bytes(
    path: str | os.PathLike[str],
    error: ErrorType,
    label: str,
    *,
    limit: int = MAX_TEXT_FILE_BYTES,
) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``); ``error`` (its message
    starting with ``label``) otherwise."""
    source = Path(path)
    fd = open_regular(source, error, label)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise error(f"{label} is {size} bytes, over the {limit}-byte limit")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise error(f"{label} {path_problem(exc)}") from None
    if len(data) > limit:
        raise error(f"{label} is over the {limit}-byte limit")
    return data


def sha256_regular_file(path: str | os.PathLike[str], error: ErrorType, label: str) -> str:
    """sha256 hex digest of the regular file ``path``, read in 1 MiB chunks (any size; a FIFO
    or device is refused before a byte is read); ``error`` (its message starting with
    ``label``) otherwise."""
    fd = open_regular(Path(path), error, label)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        try:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        except OSError as exc:
            raise error(f"{label} {path_problem(exc)}") from None
    return digest.hexdigest()


def decode_utf8(data: bytes, error: ErrorType, label: str) -> str:
    """``data`` decoded as strict UTF-8; ``error`` naming the first bad byte otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{label} is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None


def read_text(
    path: str | os.PathLike[str],
    error: ErrorType,
    label: str,
    *,
    limit: int = MAX_TEXT_FILE_BYTES,
) -> str:
    """The UTF-8 text of the regular file ``path`` within ``limit`` bytes; ``error`` otherwise."""
    return decode_utf8(read_bytes(path, error, label, limit=limit), error, label)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS or abs(value := int(text)) > MAX_JSON_INT:
        raise _RangeError(f"integer {one_line(text, limit=30)} is out of range (|n| <= 2**64-1)")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _RangeError(f"number {one_line(text, limit=30)} is out of the float64 range")
    return value


class _RangeError(ValueError):
    """A JSON number townlet cannot represent (raised from the parse hooks)."""


def loads_json(
    text: str | bytes, error: ErrorType, where: str, *, syntax: str = " is not valid JSON"
) -> Any:
    """Parse JSON ``text`` within the nesting, size and number limits; ``error`` otherwise.

    ``where`` starts the message (it names the file); ``syntax`` follows it for a syntax
    error. Integers beyond ±(2**64-1) and numbers that overflow float64 (``1e400``) are
    refused rather than turned into a huge int or ``inf``; the ``NaN``/``Infinity`` constants
    Python's json writes are kept.
    """
    if isinstance(text, bytes):
        text = decode_utf8(text, error, where)
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        detail = f"line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise error(f"{where}{syntax} ({detail})") from None
    except _RangeError as exc:
        raise error(f"{where}: {exc}") from None
    except RecursionError:
        raise error(f"{where}: nested deeper than {MAX_NESTING_DEPTH} levels") from None
    except (ValueError, OverflowError, MemoryError) as exc:
        raise error(f"{where}{syntax} ({one_line(str(exc), limit=120)})") from None
    check_structure(data, error, where)
    return data


def check_structure(data: Any, error: ErrorType, where: str) -> None:
    """Refuse a document nested deeper than ``MAX_NESTING_DEPTH`` or with more than
    ``MAX_DOCUMENT_NODES`` nodes once aliases are expanded (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_DOCUMENT_NODES:
            raise error(f"{where}: more than {MAX_DOCUMENT_NODES} values (an alias bomb?)")
        if isinstance(node, dict):
            children: Any = [*node.keys(), *node.values()]
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth >= MAX_NESTING_DEPTH:
            raise error(f"{where}: nested deeper than {MAX_NESTING_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def check_int(value: object, error: ErrorType, where: str, *, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]`` (bools and floats refused); ``error`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where}: expected an integer, got {short_repr(value)}")
    if not low <= value <= high:
        raise error(f"{where}: {short_repr(value)} is out of range [{low}, {high}]")
    return value


def available_memory_bytes() -> int | None:
    """Memory the system can still hand out (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_allocation(nbytes: int, error: ErrorType, where: str) -> None:
    """Refuse to allocate ``nbytes`` when that is more than the memory available now."""
    available = available_memory_bytes()
    if available is not None and nbytes > available:
        raise error(
            f"{where}: needs {nbytes / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB "
            "of memory is available"
        )
