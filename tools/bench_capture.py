"""Benchmark rollout capture against bare stepping of the town.

Usage: ``python tools/bench_capture.py [--part all|rollout|command|levels|codecs|baseline]
[--repeats 3] [--rounds 2] [--write docs/benchmarks.md]``.

**command** (``--part command``, see :mod:`_bench_command`): the whole ``townlet-train capture``
command against bare stepping and step + observe, 128 and 2048 agents, compressed and not, peak
RSS beside speed. **levels**: file size and save time per deflate level. **codecs**: deflate and
CRC-32 speed of zlib and ISA-L on the town's rows. **baseline**: the whole command with the
code at ``--baseline-rev`` against this tree.

**rollout** (``--part rollout``): for 8, 128 and 2048 agents (towns scaled to the default
density), times

* **bare**: ``reset`` then, per tick, ``scripted_actions`` + ``step`` + ``observe`` — the work any
  capture must do;
* **capture loop**: ``capture_frames(cfg, "scripted", ticks)`` — the same loop plus recording
  every frame, counting events and the bootstrap call;
* **samples**: ``buffer_from_frames`` — one ``ReplaySample`` with sidecar and metrics per agent
  (``capture_rollout`` = capture loop + samples);
* **save**: ``RolloutBuffer.save`` of one capture (deflated npz, into a temporary directory).

Each kind runs in its own fresh process — one untimed run, then ``--repeats`` timed runs — so
neither inherits the other's allocator state; bare and capture processes alternate
``--rounds`` times and each figure is the median of all timed runs. Overheads are
``(capture − bare) / bare``. *Cold* is ``capture_rollout`` as the first capture of a fresh
process. Everything runs twice: with glibc's default allocator settings and with
:data:`KEEP_MEMORY` (freed memory stays in the process, so no run pays page faults for memory
it already had). Thread pools are pinned to one thread before numpy is imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import _bench_command  # noqa: E402
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
# glibc tunables: never give freed heap memory back to the OS, serve ≤ 32 MB from the heap.
KEEP_MEMORY = {
    "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TOP_PAD_": str(256 << 20),
}
ALLOCATORS = (("glibc defaults", {}), ("freed memory kept", KEEP_MEMORY))


def _bare(cfg: WorldConfig, ticks: int, seed: int) -> tuple[float, ...]:
    start = time.perf_counter()
    state = reset(cfg, seed)
    rng = np.random.default_rng([seed, POLICY_STREAM])
    observe(state)
    for _ in range(ticks):
        state, _, _, _ = step(state, scripted_actions(state, None, rng))
        observe(state)
    return (time.perf_counter() - start,)


def _capture(cfg: WorldConfig, ticks: int, seed: int, save: bool = False) -> tuple[float, ...]:
    start = time.perf_counter()
    frames = capture_frames(cfg, "scripted", ticks, seed)
    looped = time.perf_counter() - start
    start = time.perf_counter()
    buffer = buffer_from_frames(frames)
    built = time.perf_counter() - start
    if not save:
        return looped, built
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        buffer.save(Path(tmp) / "capture")
        return looped, built, time.perf_counter() - start


def _child(kind: str, agents: int, ticks: int, repeats: int) -> list[list[float]]:
    """Timed runs of one kind in this (fresh) process; ``cold`` is a single first capture."""
    cfg = scaled_world_config(agents)
    if kind == "cold":
        return [list(_capture(cfg, ticks, 0))]
    run = _bare if kind == "bare" else _capture
    run(cfg, ticks, 0)
    runs = [list(run(cfg, ticks, seed)) for seed in range(1, repeats + 1)]
    if kind == "capture":
        runs[-1] = list(_capture(cfg, ticks, repeats + 1, save=True))
    return runs


def _spawn(kind: str, agents: int, ticks: int, repeats: int, env: dict[str, str]) -> list[Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(agents), str(ticks), str(repeats)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _measure(
    agents: int, ticks: int, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, float]:
    bare: list[float] = []
    loop: list[float] = []
    full: list[float] = []
    saves: list[float] = []
    for _ in range(args.rounds):
        bare += [r[0] for r in _spawn("bare", agents, ticks, args.repeats, env)]
        for r in _spawn("capture", agents, ticks, args.repeats, env):
            loop.append(r[0])
            full.append(r[0] + r[1])
            saves += r[2:]
    cold = _spawn("cold", agents, ticks, 1, env)[0]
    return {
        "bare": float(np.median(bare)),
        "loop": float(np.median(loop)),
        "full": float(np.median(full)),
        "save": float(np.median(saves)),
        "cold": cold[0] + cold[1],
    }


def _table(rows: list[tuple[int, int, dict[str, dict[str, float]]]]) -> str:
    lines = [
        "| agents | ticks | allocator | bare: agent-steps/s | capture_rollout: agent-steps/s "
        "| loop overhead | capture_rollout overhead | cold capture_rollout overhead "
        "| save (s) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for agents, ticks, by_alloc in rows:
        steps = agents * ticks
        for name, t in by_alloc.items():
            lines.append(
                f"| {agents} | {ticks} | {name} | {steps / t['bare']:,.0f} "
                f"| {steps / t['full']:,.0f} | {100 * (t['loop'] / t['bare'] - 1):+.1f}% "
                f"| {100 * (t['full'] / t['bare'] - 1):+.1f}% "
                f"| {100 * (t['cold'] / t['bare'] - 1):+.1f}% | {t['save']:.2f} |"
            )
    return "\n".join(lines)


def _write(path: Path, table: str, args: argparse.Namespace) -> None:
    """Replace (or append) the self-contained "## Rollout capture" section of ``path``."""
    section = (
        "## Rollout capture\n\n"
        "`python tools/bench_capture.py` — `capture_rollout` of the town with the scripted "
        "policy against bare stepping (`scripted_actions` + `step` + `observe`, the work any "
        "capture needs), one core (thread pools pinned to 1), numpy "
        f"{np.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} vCPUs (a VM). "
        "Loop = `capture_frames` (records every frame, the event counters and the bootstrap "
        "values); `capture_rollout` = loop + `buffer_from_frames` (one `ReplaySample` with "
        "sidecar and metrics per agent). Each kind runs in its own fresh process, one untimed "
        f"run then {args.repeats} timed ones (steady state: a capture reuses the recording "
        f"memory of the previous one, as in a PPO loop), processes alternating {args.rounds} "
        "times; medians. Cold = `capture_rollout` as the first capture of a fresh process "
        "(page faults on 1,936 bytes of observations per agent-step included). Save = "
        "`RolloutBuffer.save` (deflated npz). *glibc defaults*: on this VM the bare loop pays "
        "page faults every tick at 2048 agents (its arrays above glibc's trim threshold go back "
        "to the OS and come back zeroed), which capture mostly avoids by writing observations "
        "in place — so the overhead there is negative; *freed memory kept* "
        "(`MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TOP_PAD_`, see "
        "tools/bench_capture.py) removes that cost from both and is the strict comparison. "
        "For scale: the original Townlet captured 261–390 agent-steps/s with 2–16 "
        "agents.\n\n"
        f"{table}\n"
    )
    replace_section(path, "Rollout capture", section)


def main() -> int:
    """Run the benchmark, print the table, optionally write it to a markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per process")
    parser.add_argument("--rounds", type=int, default=2, help="bare/capture process pairs")
    parser.add_argument("--write", type=Path, default=None, help="markdown file to update")
    parser.add_argument(
        "--part",
        choices=("all", "rollout", "command", "levels", "baseline", "codecs"),
        default="all",
        help="what to run (baseline: only with --baseline-rev)",
    )
    parser.add_argument(
        "--baseline-rev", default="407416f", help="git revision for --part baseline"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, agents, ticks, repeats = args.child
        if kind in _bench_command.CHILD_KINDS:
            print(json.dumps(_bench_command.child(kind, int(agents), int(ticks))))
        else:
            print(json.dumps(_child(kind, int(agents), int(ticks), int(repeats))))
        return 0
    if args.part in ("all", "command"):
        _bench_command.run_command_part(args.rounds, args.write, __file__)
    if args.part in ("all", "levels"):
        _bench_command.run_levels_part(args.write)
    if args.part in ("all", "codecs"):
        _bench_command.run_codecs_part(args.write)
    if args.part == "baseline":
        _bench_command.run_baseline_part(args.baseline_rev, args.rounds, args.write)
    if args.part in ("all", "rollout"):
        _rollout_part(args)
    return 0


def _rollout_part(args: argparse.Namespace) -> None:
    rows = []
    for agents, ticks in SIZES:
        by_alloc = {name: _measure(agents, ticks, args, env) for name, env in ALLOCATORS}
        rows.append((agents, ticks, by_alloc))
        print(f"{agents} agents: {json.dumps(by_alloc)}", flush=True)
    table = _table(rows)
    print(table)
    if args.write is not None:
        _write(args.write, table, args)


if __name__ == "__main__":
    raise SystemExit(main())
