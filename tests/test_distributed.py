"""townlet.distributed: launch variables, rank seeds, shards; two gloo processes on loopback.

The two-process tests run ``_dist_worker.py`` once per rank with torchrun's variables set (no
torchrun needed) on a free loopback port; every subprocess is bounded by a timeout.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from townlet.distributed import LaunchInfo, launch_info, rank_seed, shard_bounds
from townlet.errors import ConfigError

WORKER = Path(__file__).with_name("_dist_worker.py")


def test_launch_info_reads_torchrun_variables() -> None:
    assert launch_info({}) == LaunchInfo(rank=0, world_size=1, local_rank=0)
    info = launch_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.distributed) == (3, 4, 1, True)
    assert not launch_info({"RANK": "0", "WORLD_SIZE": "1"}).distributed


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RANK": "x", "WORLD_SIZE": "2"}, "environment variable RANK must be an int"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE must be >= 1, got 0"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK must be below WORLD_SIZE=2, got 2"),
        ({"LOCAL_RANK": "-1"}, "LOCAL_RANK must be >= 0, got -1"),
    ],
)
def test_launch_info_rejects_bad_variables(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        launch_info(environ)


def test_rank_seed_is_the_run_seed_on_rank_zero_and_distinct_elsewhere() -> None:
    assert rank_seed(7, 0) == 7
    seeds = [rank_seed(7, r) for r in range(1, 64)]
    assert len(set(seeds)) == 63 and 7 not in seeds
    assert all(0 <= s < 2**31 for s in seeds)
    assert rank_seed(7, 1) == rank_seed(7, 1) != rank_seed(8, 1)


def test_shard_bounds_cover_every_item_once() -> None:
    for n in range(0, 12):
        for world in range(1, 5):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        shard_bounds(4, 2, 2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(args: list[str], world: int) -> list[subprocess.Popen[str]]:
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _finish(procs: list[subprocess.Popen[str]], timeout: float) -> list[tuple[int, str]]:
    out = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        out.append((proc.returncode, err))
    return out


def test_two_rank_steps_equal_one_rank_steps_on_the_global_minibatches(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(WORKER.parent))
    try:
        import _dist_worker as worker
    finally:
        sys.path.remove(str(WORKER.parent))
    from townlet.distributed.reduce import keep_local

    results = _finish(_launch(["steps", str(tmp_path)], 2), timeout=240)
    assert [code for code, _ in results] == [0, 0], results
    two = torch.load(tmp_path / "rank0.pt", weights_only=True)
    one = worker.run_steps(0, 1, keep_local)
    for key in ("ppo_params", "ppo_moments", "bc_params"):
        for name, tensor in one[key].items():
            assert torch.allclose(two[key][name], tensor, rtol=0, atol=1e-6), (key, name)
    # Stats are the global minibatch's: counts exact, means within float tolerance.
    for ours, theirs in zip(two["ppo_stats"], one["ppo_stats"], strict=True):
        assert ours["transitions"] == theirs["transitions"]
        assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    for ours, theirs in zip(two["bc_stats"], one["bc_stats"], strict=True):
        assert (ours["samples"], ours["correct"]) == (theirs["samples"], theirs["correct"])
        assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    assert [s["transitions"] for s in two["ppo_stats"]] == list(worker.SIZES)
    # Equal row counts pass; unequal ones stop the rank with both counts named.
    assert two["rows_errors"] == [
        "dataset=d: the ranks hold different row counts (from 10 to 11; this rank 10); every "
        "rank must collect the same number of steps (same --num-envs/--agents and ticks on "
        "every rank)"
    ]


def test_a_killed_rank_ends_its_peer_with_one_line_and_exit_one(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    timeout_s = 20.0
    procs = _launch(["hang", str(tmp_path), str(timeout_s)], 2)
    try:
        assert procs[0].stdout is not None
        assert procs[0].stdout.readline().strip() == "ready"  # both joined, all-reducing
        procs[1].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        (code, err), _ = _finish(procs, timeout=timeout_s + 60)
        elapsed = time.monotonic() - killed_at
    finally:
        for proc in procs:
            proc.kill()
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("townlet-train bc: failed: rank 0 of 2: a peer process failed")
    assert elapsed < timeout_s + 15, elapsed
