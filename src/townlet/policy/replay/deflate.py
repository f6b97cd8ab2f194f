"""Deflate codecs for the npz files a capture writes: zlib (always there) or ISA-L.

Every codec writes raw deflate streams and CRC-32s that numpy's loader (``zipfile`` and zlib)
reads; they differ in speed and in the exact deflate bytes, never in what a file decodes to.
ISA-L (Intel's Intelligent Storage Acceleration Library, the optional ``isal`` package: ``pip
install 'townlet[fast]'``) deflates the town's observation maps several times faster than zlib
at level 1, into slightly smaller files, and computes CRC-32s faster still (docs/capture.md,
"Compression"). It has levels 1–3 only, so it serves those; level 0 (stored blocks) and 4–9
always use zlib.

Which codec serves a capture: ``TOWNLET_DEFLATE`` = ``auto`` (the default: ISA-L where the
package is installed), ``zlib`` or ``isal`` (an error where it is not installed).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from typing import Any

import attrs

ENV_VAR = "TOWNLET_DEFLATE"
CHOICES = ("auto", "zlib", "isal")
ISAL_LEVELS = range(1, 4)
# A deflate stream may hold any number of blocks; one that ends on a byte boundary without the
# final bit (a sync flush) can be followed by the blocks of another compressor. This empty
# final block ends such a chain (what a fresh compressor's Z_FINISH writes: 2 bytes).
FINAL_BLOCK = zlib.compressobj(1, zlib.DEFLATED, -15).flush()


@attrs.frozen(kw_only=True)
class Codec:
    """One deflate implementation: ``compressobj(level, method, wbits, memLevel)`` and
    ``crc32(data, value)`` with zlib's signatures."""

    name: str
    compressobj: Callable[..., Any]
    compress: Callable[[Any, int, int], bytes]
    crc32: Callable[[Any, int], int]
    sync_flush: int

    def whole(self, data: Any, level: int) -> bytes:
        """``data`` as one complete raw deflate stream (zlib's default window: numpy's bytes
        for zlib), in one call — no compressor object to set up per small member."""
        return self.compress(data, level, -15)

    def block(self, data: Any, level: int) -> bytes:
        """``data`` deflated on its own into non-final blocks that end on a byte boundary, so
        that the blocks of the next piece (or :data:`FINAL_BLOCK`) may follow them."""
        z = self.compressobj(level, zlib.DEFLATED, -15)
        return bytes(z.compress(data) + z.flush(self.sync_flush))


ZLIB = Codec(
    name="zlib",
    compressobj=zlib.compressobj,
    compress=zlib.compress,
    crc32=zlib.crc32,
    sync_flush=zlib.Z_SYNC_FLUSH,
)


def _isal() -> Codec | None:
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return Codec(
        name="isal",
        compressobj=isal_zlib.compressobj,
        compress=isal_zlib.compress,
        crc32=isal_zlib.crc32,
        sync_flush=isal_zlib.Z_SYNC_FLUSH,
    )


ISAL = _isal()


def check_choice(choice: str | None = None) -> str:
    """The codec choice ``choice`` (default: ``$TOWNLET_DEFLATE``, else ``auto``); raises
    ``ValueError`` for an unknown name, or for ``isal`` without the package."""
    source = ENV_VAR if choice is None else "deflate"
    value = os.environ.get(ENV_VAR, "auto") if choice is None else choice
    if value not in CHOICES:
        raise ValueError(f"{source} must be one of {', '.join(CHOICES)}, got {value!r}")
    if value == "isal" and ISAL is None:
        raise ValueError(
            f"{source}=isal needs the isal package: pip install 'townlet[fast]' (or isal)"
        )
    return value


def codec_for(level: int | None, choice: str | None = None) -> Codec:
    """The codec that deflates at ``level`` (None: stored members, only CRCs to compute) under
    ``choice`` (see :func:`check_choice`)."""
    value = check_choice(choice)
    if value == "zlib" or ISAL is None:
        return ZLIB
    if level is None or level in ISAL_LEVELS:
        return ISAL
    return ZLIB
