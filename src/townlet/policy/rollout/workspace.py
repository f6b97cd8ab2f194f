"""Recording memory for captures, reused from one capture to the next.

A capture records into one block per run (at 2048 agents × 200 ticks, 844 MB). Memory that
large comes fresh from the OS on every allocation, and first touching it — page faults,
hundreds of thousands of them — cost more than everything else a capture adds to stepping the
world. So the blocks are kept in a small pool and handed out again, once nothing refers to
them any more, to the next capture of the same size (a PPO loop captures the same shape every
iteration).

"Nothing refers to them" is exact, not a heuristic: every array a capture hands out (the
samples' arrays, the recorder's arrays, anything derived from them without a copy) is a numpy
view whose ``base`` is the block itself (numpy collapses chains of views onto the owner), so
the block's reference count is the pool's own references plus one per live view. A block is
reused only when that count shows no view at all.

The pool holds at most :data:`POOL_SIZE` blocks, idle or not (two: a PPO loop keeps the
previous buffer while the next capture runs). :func:`release_capture_buffers` drops the idle
ones, e.g. before a long phase that captures nothing.
"""

from __future__ import annotations

import math
import mmap
import sys
import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

from townlet._input_limits import check_allocation
from townlet.errors import RolloutError

POOL_SIZE = 2
_ALIGN = 64  # bytes; every array in a block starts on a cache line

Field = tuple[str, tuple[int, ...], Any]  # name, shape, dtype


class BufferPool:
    """Byte blocks for capture recordings (module docstring)."""

    def __init__(self, size: int = POOL_SIZE) -> None:
        self._size = size
        self._blocks: list[NDArray[np.uint8]] = []
        self._lock = threading.Lock()

    def _idle(self, index: int) -> bool:
        # References: the list slot and getrefcount's argument; any more is a live view.
        return sys.getrefcount(self._blocks[index]) == 2

    def take(self, nbytes: int) -> NDArray[np.uint8]:
        """An idle block of exactly ``nbytes`` bytes (contents left from its last use), or a
        new one; the pool then keeps the most recent :data:`POOL_SIZE` blocks."""
        with self._lock:
            for index in range(len(self._blocks)):
                if self._blocks[index].nbytes == nbytes and self._idle(index):
                    return self._blocks[index]
            block = _fresh_block(nbytes)
            self._blocks.append(block)
            while len(self._blocks) > self._size:
                idle = [i for i in range(len(self._blocks) - 1) if self._idle(i)]
                self._blocks.pop(idle[0] if idle else 0)  # a busy block lives on in its views
            return block

    def release_idle(self) -> int:
        """Forget the idle blocks (their memory is freed); returns the bytes released."""
        with self._lock:
            idle = [i for i in range(len(self._blocks)) if self._idle(i)]
            freed = sum(self._blocks[i].nbytes for i in idle)
            self._blocks = [b for i, b in enumerate(self._blocks) if i not in idle]
            return freed

    def held_bytes(self) -> int:
        """Bytes in the blocks the pool refers to (idle or not)."""
        with self._lock:
            return sum(b.nbytes for b in self._blocks)


POOL = BufferPool()
# Private, not the default shared mapping: shared anonymous memory is shmem, whose page faults
# cost more. Windows has no flags (and no such difference).
_PRIVATE = {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS} if hasattr(mmap, "MAP_PRIVATE") else {}


def _fresh_block(nbytes: int) -> NDArray[np.uint8]:
    # An anonymous mapping, not np.empty: numpy asks the kernel for transparent huge pages
    # on large allocations, and a capture's first tick writes one row per agent spread over
    # the whole block, so every 2 MiB huge page was faulted in (zeroed, often compacted)
    # at once — 2.0 s of a 5.7 s capture of 2048 agents x 200 ticks. Small pages are
    # touched as the ticks reach them.
    # The block must be the mapping's own array (no slice of it): views collapse onto it, and
    # the pool counts them through its reference count.
    if nbytes == 0:
        return np.empty(0, dtype=np.uint8)
    return np.frombuffer(mmap.mmap(-1, nbytes, **_PRIVATE), dtype=np.uint8)


def release_capture_buffers() -> int:
    """Free the recording memory kept for future captures that no capture result uses any
    more; returns the number of bytes released. Captures keep working (they allocate again)."""
    return POOL.release_idle()


def allocate(fields: list[Field], pool: BufferPool | None = None) -> dict[str, NDArray[Any]]:
    """Uninitialised arrays for ``fields``, all views of one block from ``pool`` (default:
    the module's pool)."""
    offsets, total = [], 0
    for _, shape, dtype in fields:
        offsets.append(total)
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        total += -(-nbytes // _ALIGN) * _ALIGN
    # agents x ticks x observation size, checked before a block that cannot fit is requested
    check_allocation(total, RolloutError, "capture recording buffers")
    block = (pool or POOL).take(total)
    out = {}
    for (name, shape, dtype), start in zip(fields, offsets, strict=True):
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        out[name] = block[start : start + nbytes].view(dtype).reshape(shape)
    return out
