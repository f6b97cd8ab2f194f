"""Npz archives whose members are encoded piece by piece, then assembled in one write.

A capture knows a member's bytes (the ``.npy`` header, then the array's rows in order) tick by
tick, long before the sample is complete. :class:`MemberStream` takes those pieces as they come:
it deflates each piece on its own, with a fresh compressor, into blocks that end on a byte
boundary (deflate and CRC release the GIL, so a writer thread runs beside the stepping), keeps
the running CRC-32 and the sizes, and :data:`~.deflate.FINAL_BLOCK` closes the chain at
:meth:`MemberStream.finish`: one valid deflate stream, no compressor held open between pieces
(2,048 open zlib streams held ~60 MiB), a few bytes more per piece. :func:`write_archive` then
writes the zip with every size known: local header, data, the central directory — the same
records ``zipfile`` writes for ``numpy.savez`` (``force_zip64``, the 1980-01-01 timestamp,
permissions 0600).

:func:`array_member` encodes a complete array in one call; with zlib that is zlib's default
window, so an archive of such members is byte for byte what :func:`~.npz_write.write_npz` (and
numpy at level 6) writes; a test holds that. Chunked members decode to the same bytes with
other deflate bytes.
"""

from __future__ import annotations

import functools
import struct
import zipfile
from collections.abc import Sequence
from typing import IO, Any

import attrs
import numpy as np
from numpy.typing import NDArray

from townlet.policy.replay.deflate import FINAL_BLOCK, ZLIB, Codec
from townlet.policy.replay.npz_write import _header_for, check_compress_level

_ZIP64_LIMIT = (1 << 31) - 1  # zipfile's threshold for zip64 records
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL_FIXED = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader
_SIZES = struct.Struct("<L2L")
_OFFSET = struct.Struct("<L")
_ZIP64 = struct.Struct("<HHQQ")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_END64_LOCATOR = struct.Struct("<4sLQL")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # numpy's (zipfile's) timestamp for members it writes


class MemberStream:
    """One npz member (``<name>.npy``) encoded as its bytes arrive: :meth:`feed` the pieces in
    order (the ``.npy`` header first), :meth:`finish`, then hand it to :func:`write_archive`.
    ``level`` None stores the bytes (the pieces are kept by reference, not copied); 0–9
    deflates each piece on its own with ``codec`` (module docstring)."""

    __slots__ = ("_codec", "_open", "_pieces", "crc", "level", "name", "size")

    def __init__(self, name: str, level: int | None, *, codec: Codec = ZLIB) -> None:
        self.name = name
        self.level = None if level is None else check_compress_level(level)
        self._codec = codec
        self._open = True
        self._pieces: list[Any] = []
        self.crc = 0
        self.size = 0

    def feed(self, data: bytes | memoryview) -> None:
        """Append ``data`` (bytes, or a C-contiguous buffer that stays unchanged until the
        archive is written) to the member."""
        view = memoryview(data).cast("B")
        self.crc = self._codec.crc32(view, self.crc)
        self.size += view.nbytes
        if self.level is None:
            self._pieces.append(view)
        else:
            self._pieces.append(self._codec.block(view, self.level))

    def feed_array(self, array: NDArray[Any]) -> None:
        """Append the bytes of the C-contiguous ``array`` (kept by reference when stored)."""
        self.feed(memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8)))  # type: ignore[arg-type]

    @classmethod
    def whole(cls, name: str, data: bytes, level: int, *, codec: Codec = ZLIB) -> MemberStream:
        """A finished member whose whole content ``data`` is deflated in one call."""
        member = cls(name, level, codec=codec)
        member.crc, member.size = codec.crc32(data, 0), len(data)
        member._pieces.append(codec.whole(data, level))
        member._open = False
        return member

    def finish(self) -> None:
        """End the deflate stream; no more :meth:`feed` after this."""
        if self._open and self.level is not None:
            self._pieces.append(FINAL_BLOCK)
        self._open = False

    def release(self) -> None:
        """Drop the member's data (once written); only its sizes and CRC remain."""
        self._pieces = []

    @property
    def pieces(self) -> Sequence[Any]:
        """The member's data as written to the archive (deflated or stored)."""
        return self._pieces

    @property
    def compressed_size(self) -> int:
        """Bytes of the member's data in the archive."""
        return sum(memoryview(p).nbytes for p in self._pieces)


def array_member(
    name: str, array: NDArray[Any], level: int | None, *, codec: Codec = ZLIB
) -> MemberStream:
    """A finished member holding ``array`` as numpy saves it (header, then its bytes): stored
    pieces by reference, or deflated in one call (a capture's archives hold thousands of small
    members)."""
    if array.dtype.hasobject:
        raise ValueError("object arrays cannot be saved (allow_pickle=False)")
    header, data = _header_for(np.asanyarray(array))
    if level is not None:
        return MemberStream.whole(name, header + data.tobytes(), level, codec=codec)
    member = MemberStream(name, None, codec=codec)
    member.feed(header)
    member.feed_array(data)
    member.finish()
    return member


def npy_header(array_like: NDArray[Any]) -> bytes:
    """The ``.npy`` header numpy writes before an array of ``array_like``'s dtype and shape."""
    return _header_for(array_like)[0]


def _info(member: MemberStream, offset: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(f"{member.name}.npy", date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED if member.level is None else zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    info.flag_bits = 0
    info.file_size = member.size
    info.compress_size = member.compressed_size
    info.CRC = member.crc
    info.header_offset = offset
    return info


@attrs.frozen
class _Layout:
    """One member's zip records as fixed bytes around the values that vary (CRC, sizes,
    offset): a capture writes the same seven members thousands of times, and building a
    ``ZipInfo`` for each cost more than deflating the small ones."""

    local: tuple[bytes, bytes]  # local header before the CRC, after the sizes (with the name)
    masked: bool  # the local header shows 0xFFFFFFFF sizes (zip64), as some Pythons write
    central: tuple[bytes, bytes, bytes]  # central record around CRC + sizes, then the offset

    def records(self, member: MemberStream, offset: int) -> tuple[bytes, bytes]:
        crc, size, packed = member.crc, member.size, member.compressed_size
        shown = _SIZES.pack(crc, 0xFFFFFFFF, 0xFFFFFFFF) if self.masked else None
        sizes = _SIZES.pack(crc, packed, size)
        local = self.local[0] + (shown or sizes) + self.local[1] + _ZIP64.pack(1, 16, size, packed)
        before, middle, name = self.central
        return local, before + sizes + middle + _OFFSET.pack(offset) + name


def _slow_records(member: MemberStream, offset: int) -> tuple[bytes, bytes]:
    info = _info(member, offset)
    local = info.FileHeader(zip64=True)  # first: it sets the versions the central record shows
    return local, _central_record(info)


@functools.lru_cache(maxsize=64)
def _layout(name: str, stored: bool) -> _Layout | None:
    """The :class:`_Layout` of member ``name``, read off ``zipfile``'s own records; None where
    packing it would not give their bytes (checked once per member, on two probes)."""
    probe = MemberStream(name, None if stored else 0)
    local, central = _slow_records(probe, 0)
    end = _LOCAL_FIXED.size  # the fixed part; CRC and sizes are the 12 bytes before its last 4
    parts = local[: end - 16], local[end - 4 : end] + f"{name}.npy".encode()
    around = central[:16], central[28:42], central[_CENTRAL.size :]
    for masked in (True, False):
        layout = _Layout(parts, masked, around)
        probes = ((0x12345678, 1000, 999, 77), (7, 2, 3, 123456))
        for probe.crc, probe.size, compressed, offset in probes:
            probe._pieces = [bytes(compressed)]
            if layout.records(probe, offset) != _slow_records(probe, offset):
                break
        else:
            return layout
    return None


def _records(member: MemberStream, offset: int) -> tuple[bytes, bytes]:
    """The local header ``zipfile`` writes before ``member`` at ``offset`` (``force_zip64``)
    and the member's central directory record."""
    layout = _layout(member.name, member.level is None)
    if layout is None or max(member.size, member.compressed_size, offset) > _ZIP64_LIMIT:
        return _slow_records(member, offset)
    return layout.records(member, offset)


def _central_record(info: zipfile.ZipInfo) -> bytes:
    """The central directory entry ``zipfile`` writes for ``info`` (after its local header)."""
    extra: list[int] = []
    file_size, compress_size, offset = info.file_size, info.compress_size, info.header_offset
    if file_size > _ZIP64_LIMIT or compress_size > _ZIP64_LIMIT:
        extra += [file_size, compress_size]
        file_size = compress_size = 0xFFFFFFFF
    if offset > _ZIP64_LIMIT:
        extra.append(offset)
        offset = 0xFFFFFFFF
    extra_data = struct.pack("<HH" + "Q" * len(extra), 1, 8 * len(extra), *extra) if extra else b""
    version = max(45 if extra else 0, info.extract_version)
    name = info.filename.encode("ascii")
    record = _CENTRAL.pack(
        b"PK\x01\x02", max(45 if extra else 0, info.create_version), info.create_system,
        version, 0, info.flag_bits, info.compress_type, 0, 33, info.CRC, compress_size,
        file_size, len(name), len(extra_data), 0, 0, 0, info.external_attr, offset,
    )  # fmt: skip
    return record + name + extra_data


def write_archive(handle: IO[bytes], members: Sequence[MemberStream]) -> None:
    """Write the finished ``members`` to ``handle`` as one zip archive, in order."""
    offset = handle.tell()  # offsets are absolute, as zipfile writes them
    records = []
    for member in members:
        header, record = _records(member, offset)
        handle.write(header)
        for piece in member.pieces:
            handle.write(piece)
        offset += len(header) + member.compressed_size
        records.append(record)
    central = b"".join(records)
    handle.write(central)
    where, size, count = offset, len(central), len(records)
    if where > _ZIP64_LIMIT or size > _ZIP64_LIMIT or count > 0xFFFF:
        end = where + size
        handle.write(_END64.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, where))
        handle.write(_END64_LOCATOR.pack(b"PK\x06\x07", 0, end, 1))
        where, size, count = min(where, 0xFFFFFFFF), min(size, 0xFFFFFFFF), min(count, 0xFFFF)
    handle.write(_END.pack(b"PK\x05\x06", 0, 0, count, count, size, where, 0))
