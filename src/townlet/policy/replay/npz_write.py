"""Writing ``.npz`` archives byte for byte as ``numpy.savez`` / ``savez_compressed`` do, with
a choice of deflate level and less Python per member.

numpy writes each member through ``zipfile`` (``force_zip64=True``, the default timestamp
1980-01-01, permissions 0600) as the ``.npy`` header followed by the array's bytes, in chunks of
16 MiB. This module makes the same calls with the same chunks, so at the default level the file
is identical to numpy's (a test compares them byte for byte); it only skips numpy's buffered
``nditer`` copy of every chunk and caches the ``.npy`` headers, which are the same for every
sample of a capture. The deflate and CRC work happens in zlib, which releases the GIL on large
buffers, so several threads can write archives at once.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from functools import lru_cache
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

MIN_COMPRESS_LEVEL = 0
MAX_COMPRESS_LEVEL = 9
NUMPY_COMPRESS_LEVEL = 6  # zlib's default, what np.savez_compressed uses
_CHUNK_BYTES = 16 * 1024**2  # numpy's write_array buffer


def check_compress_level(level: object) -> int:
    """``level`` as a deflate level 0–9; raises ``ValueError`` naming what was given."""
    if isinstance(level, bool) or not isinstance(level, int | np.integer):
        raise ValueError(f"compress_level must be an int from 0 to 9, got {level!r}")
    if not MIN_COMPRESS_LEVEL <= int(level) <= MAX_COMPRESS_LEVEL:
        raise ValueError(f"compress_level must be an int from 0 to 9, got {level!r}")
    return int(level)


@lru_cache(maxsize=256)
def _npy_header(descr: str, shape: tuple[int, ...], fortran: bool) -> bytes:
    """The ``.npy`` header numpy writes for an array of this layout (format 1.0, or 2.0 when
    the header does not fit 1.0, as ``write_array`` chooses)."""
    handle = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    try:
        np.lib.format.write_array_header_1_0(handle, header)
    except ValueError:
        handle = io.BytesIO()
        np.lib.format.write_array_header_2_0(handle, header)
    return handle.getvalue()


def _header_for(array: NDArray[Any]) -> tuple[bytes, NDArray[Any]]:
    """The header and a C-contiguous array whose bytes numpy writes after it."""
    fields = np.lib.format.header_data_from_array_1_0(array)
    header = _npy_header(fields["descr"], tuple(fields["shape"]), bool(fields["fortran_order"]))
    data = array.T if fields["fortran_order"] else array
    return header, np.ascontiguousarray(data)


def _write_member(handle: IO[bytes], array: NDArray[Any]) -> None:
    if array.dtype.hasobject:
        raise ValueError("object arrays cannot be saved (allow_pickle=False)")
    header, data = _header_for(array)
    handle.write(header)
    raw = memoryview(data.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    step = max(_CHUNK_BYTES // max(array.itemsize, 1), 1) * array.itemsize
    for start in range(0, len(raw), step):
        handle.write(raw[start : start + step])


def write_npz(
    handle: IO[bytes], arrays: Mapping[str, NDArray[Any]], *, level: int | None = None
) -> None:
    """Write ``arrays`` to the binary, seekable ``handle`` as an npz archive, members in the
    mapping's order. ``level`` None stores the members (``np.savez``); 0–9 deflates them at
    that level (6 gives ``np.savez_compressed``'s bytes)."""
    if level is None:
        archive = zipfile.ZipFile(handle, mode="w", compression=zipfile.ZIP_STORED)
    else:
        archive = zipfile.ZipFile(
            handle,
            mode="w",
            compression=zipfile.ZIP_DEFLATED,
            compresslevel=check_compress_level(level),
        )
    with archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                _write_member(member, np.asanyarray(value))
