"""Benchmark rollout capture against bare stepping of the town.

Usage: ``python tools/bench_capture.py [--repeats 3] [--write docs/benchmarks.md]``. For 8, 128
and 2048 agents (towns scaled to the default density), times

* **bare**: ``reset`` then, per tick, ``scripted_actions`` + ``step`` + ``observe`` — the work any
  capture must do;
* **capture loop**: ``capture_frames(cfg, "scripted", ticks)`` — the same loop plus recording
  every frame, counting events and the bootstrap call;
* **samples**: ``buffer_from_frames`` — one ``ReplaySample`` with sidecar and metrics per agent
  (``capture_rollout`` = capture loop + samples);
* **save**: ``RolloutBuffer.save`` of that capture (deflated npz, into a temporary directory).

Overheads are relative to bare (median of ``--repeats`` runs each). Thread pools are pinned to one
thread before numpy is imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _benchdoc import replace_section  # noqa: E402
from townlet.policy.rollout import (  # noqa: E402
    POLICY_STREAM,
    buffer_from_frames,
    capture_frames,
)
from townlet.world import (  # noqa: E402
    WorldConfig,
    observe,
    reset,
    scaled_world_config,
    scripted_actions,
    step,
)

# (agents, ticks). Recorded observations take agents · ticks · 1,936 bytes (790 MB at 2048 × 200).
SIZES = ((8, 500), (128, 500), (2048, 200))


def _bare(cfg: WorldConfig, ticks: int, seed: int) -> float:
    start = time.perf_counter()
    state = reset(cfg, seed)
    rng = np.random.default_rng([seed, POLICY_STREAM])
    observe(state)
    for _ in range(ticks):
        state, _, _, _ = step(state, scripted_actions(state, None, rng))
        observe(state)
    return time.perf_counter() - start


def _capture(cfg: WorldConfig, ticks: int, seed: int) -> tuple[float, float, float]:
    start = time.perf_counter()
    frames = capture_frames(cfg, "scripted", ticks, seed)
    looped = time.perf_counter() - start
    start = time.perf_counter()
    buffer = buffer_from_frames(frames)
    built = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        buffer.save(Path(tmp) / "capture")
        saved = time.perf_counter() - start
    return looped, built, saved


def _bench(agents: int, ticks: int, repeats: int) -> tuple[float, ...]:
    """Steady state: one untimed run of each kind first, so the recording buffers of the timed
    runs reuse memory the process already holds (as in a PPO loop capturing every iteration)."""
    cfg = scaled_world_config(agents)
    _bare(cfg, ticks, 0)
    _capture(cfg, ticks, 0)
    runs = []
    for seed in range(repeats):
        runs.append((_bare(cfg, ticks, seed), *_capture(cfg, ticks, seed)))
    return tuple(float(x) for x in np.median(np.array(runs), axis=0))


def _cold(agents: int, ticks: int) -> float:
    """The capture loop's time as the first capture of a fresh process (its recording buffers
    touch fresh memory: page faults included)."""
    out = subprocess.run(
        [sys.executable, __file__, "--cold", str(agents), str(ticks)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _table(rows: list[tuple[int, int, tuple[float, ...], float]]) -> str:
    lines = [
        "| agents | ticks | bare: agent-steps/s | capture loop: agent-steps/s | loop overhead "
        "| + samples: agent-steps/s | capture_rollout overhead | save (s) "
        "| cold loop overhead |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for agents, ticks, (bare, loop, built, save), cold in rows:
        steps = agents * ticks
        lines.append(
            f"| {agents} | {ticks} | {steps / bare:,.0f} | {steps / loop:,.0f} "
            f"| {100 * (loop / bare - 1):+.1f}% | {steps / (loop + built):,.0f} "
            f"| {100 * ((loop + built) / bare - 1):+.1f}% | {save:.2f} "
            f"| {100 * (cold / bare - 1):+.1f}% |"
        )
    return "\n".join(lines)


def _write(path: Path, table: str, repeats: int) -> None:
    """Replace (or append) the self-contained "## Rollout capture" section of ``path``."""
    section = (
        "## Rollout capture\n\n"
        "`python tools/bench_capture.py` — `capture_rollout` of the town with the scripted "
        "policy against bare stepping (`scripted_actions` + `step` + `observe`, the work any "
        "capture needs), one core (thread pools pinned to 1), numpy "
        f"{np.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}; median of {repeats} runs. "
        "The capture loop (`capture_frames`) records every frame, the event counters and the "
        "bootstrap values; `+ samples` adds `buffer_from_frames` (one `ReplaySample` with sidecar "
        "and metrics per agent, a fixed cost per agent), so `capture_rollout` = both; save "
        "writes the capture directory (deflated npz). Steady state: each kind ran once untimed "
        "first (as in a PPO loop capturing every iteration); *cold* is the capture loop as "
        "the first capture of a fresh process, where first touching the recorded observations "
        "(page faults; 1,936 bytes per agent-step) is paid. "
        "For scale: the original Townlet captured 261–390 agent-steps/s with 2–16 "
        "agents.\n\n"
        f"{table}\n"
    )
    replace_section(path, "Rollout capture", section)


def main() -> int:
    """Run the benchmark, print the table, optionally write it to a markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per size (median)")
    parser.add_argument("--write", type=Path, default=None, help="markdown file to update")
    parser.add_argument("--cold", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold:
        print(_capture(scaled_world_config(args.cold[0]), args.cold[1], 0)[0])
        return 0
    rows = []
    for agents, ticks in SIZES:
        cold = _cold(agents, ticks)
        times = _bench(agents, ticks, args.repeats)
        rows.append((agents, ticks, times, cold))
        print(f"{agents} agents: bare/loop/samples/save {times} cold loop {cold:.3f}", flush=True)
    table = _table(rows)
    print(table)
    if args.write is not None:
        _write(args.write, table, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
