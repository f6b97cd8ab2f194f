"""The recording-buffer pool: a block is handed out again only when nothing refers to it, so a
capture result that is still alive is never overwritten by a later capture."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

from townlet.policy.rollout import capture_rollout
from townlet.policy.rollout.workspace import POOL, BufferPool, allocate, release_capture_buffers
from townlet.world import WorldConfig


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def test_busy_block_is_not_reused_and_idle_block_is() -> None:
    pool = BufferPool(size=3)
    first = allocate([("a", (4, 5), np.float32), ("b", (3,), np.int64)], pool)
    first["a"][...] = 1.0
    second = allocate([("a", (4, 5), np.float32), ("b", (3,), np.int64)], pool)
    assert not np.shares_memory(first["a"], second["a"])
    kept = first["b"][1:]  # a view of a view still pins the block
    addr = _address(first["a"])
    del first
    third = allocate([("a", (4, 5), np.float32), ("b", (3,), np.int64)], pool)
    assert _address(third["a"]) != addr
    del kept, third
    fourth = allocate([("a", (4, 5), np.float32), ("b", (3,), np.int64)], pool)
    assert _address(fourth["a"]) == addr  # released: the first block comes back


def test_layout_alignment_and_dtypes() -> None:
    arrays = allocate(
        [("m", (2, 3, 1), np.float32), ("d", (5,), np.bool_), ("i", (2, 2), np.int64)],
        BufferPool(),
    )
    assert arrays["m"].shape == (2, 3, 1) and arrays["m"].dtype == np.float32
    assert arrays["d"].dtype == np.bool_ and arrays["i"].dtype == np.int64
    assert all(_address(a) % 64 == _address(arrays["m"]) % 64 for a in arrays.values())
    assert all(a.flags.c_contiguous for a in arrays.values())


def test_pool_keeps_at_most_its_size_and_releases_idle_blocks() -> None:
    pool = BufferPool(size=2)
    held = [pool.take(100 + i) for i in range(3)]
    assert pool.held_bytes() == 101 + 102  # the oldest (busy) block was forgotten
    del held
    gc.collect()
    assert pool.release_idle() == 203 and pool.held_bytes() == 0


def test_live_capture_is_never_overwritten() -> None:
    cfg = WorldConfig(num_agents=3)
    first = capture_rollout(cfg, "random", 17, seed=1)
    snapshot = [s.features.copy() for s in first.samples]
    for seed in (2, 3, 4):
        capture_rollout(cfg, "random", 17, seed=seed)
    for sample, saved in zip(first.samples, snapshot, strict=True):
        np.testing.assert_array_equal(sample.features, saved)
    survivor = first.samples[1].map
    addr = _address(survivor)
    del first, sample
    again = capture_rollout(cfg, "random", 17, seed=1)
    assert not np.shares_memory(again.samples[1].map, survivor)
    np.testing.assert_array_equal(again.samples[0].features, snapshot[0])
    assert _address(survivor) == addr


def test_released_capture_memory_is_reused() -> None:
    cfg = WorldConfig(num_agents=2)
    buffer = capture_rollout(cfg, "scripted", 19, seed=0)
    addr = _address(buffer.samples[0].map)
    del buffer
    again = capture_rollout(cfg, "scripted", 19, seed=0)
    assert _address(again.samples[0].map) == addr
    del again
    assert release_capture_buffers() > 0
    assert POOL.held_bytes() >= 0


def test_buffer_protocol_exports_pin_the_block() -> None:
    cfg = WorldConfig(num_agents=2)
    buffer = capture_rollout(cfg, "random", 23, seed=0)
    exported = memoryview(buffer.samples[0].map)
    saved = bytes(exported)
    del buffer
    for seed in (1, 2, 3):
        capture_rollout(cfg, "random", 23, seed=seed)
    assert bytes(exported) == saved


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _huge_pages_always() -> bool:
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
@pytest.mark.skipif(_huge_pages_always(), reason="the kernel gives every mapping huge pages")
def test_first_tick_does_not_fault_in_the_whole_block() -> None:
    # A capture's first tick writes one row per agent, spread over the whole agent-major
    # block; with numpy's huge-page advice that made the whole block resident at once.
    pool = BufferPool()
    block = allocate([("maps", (512, 1 << 19), np.uint8)], pool)["maps"]  # 256 MiB
    before = _resident_bytes()
    block[:, 0] = 1  # one byte per 512 KiB
    assert _resident_bytes() - before < 32 << 20
