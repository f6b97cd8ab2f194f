"""Benchmark the embedded town: world steps/s and agent-steps/s on one core.

Usage: ``python tools/bench_world.py [--seconds 3] [--write docs/benchmarks.md] [--note TEXT]``
(``--note``: how the machine was loaded, written into the section). Measures, for
8, 128 and 2048 agents (towns scaled to keep the density of the default 16×16 town): the bare
world ``step`` (actions from the scripted policy, computed outside the timed region) and the
full loop ``scripted_actions`` + ``step`` + ``observe``. Thread pools are pinned to one thread
before numpy is imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _benchdoc import replace_section  # noqa: E402
from townlet.world import observe, reset, scaled_world_config, scripted_actions, step  # noqa: E402

SIZES = (8, 128, 2048)
WARMUP_TICKS = 100


def _bench(agents: int, seconds: float) -> tuple[float, float]:
    """Seconds per bare step and per full loop tick (median of three timed windows)."""
    cfg = scaled_world_config(agents)
    state = reset(cfg, 0)
    rng = np.random.default_rng(0)
    for _ in range(WARMUP_TICKS):
        state, _, _, _ = step(state, scripted_actions(state, cfg, rng))
    bare, full = [], []
    for _ in range(3):
        ticks, spent, t_end = 0, 0.0, time.perf_counter() + seconds / 6
        while time.perf_counter() < t_end:
            acts = scripted_actions(state, cfg, rng)
            t0 = time.perf_counter()
            state, _, _, _ = step(state, acts)
            spent += time.perf_counter() - t0
            ticks += 1
        bare.append(spent / ticks)
        ticks, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 6:
            state, _, _, _ = step(state, scripted_actions(state, cfg, rng))
            observe(state, cfg)
            ticks += 1
        full.append((time.perf_counter() - t0) / ticks)
    return float(np.median(bare)), float(np.median(full))


def _table(rows: list[tuple[int, int, float, float]]) -> str:
    lines = [
        "| agents | grid | bare step: steps/s | agent-steps/s | µs/agent-step "
        "| step+scripted+observe: steps/s | agent-steps/s | µs/agent-step |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for agents, size, bare, full in rows:
        lines.append(
            f"| {agents} | {size}×{size} | {1 / bare:,.0f} | {agents / bare:,.0f} "
            f"| {bare / agents * 1e6:.3f} | {1 / full:,.0f} | {agents / full:,.0f} "
            f"| {full / agents * 1e6:.3f} |"
        )
    return "\n".join(lines)


def _write(path: Path, table: str, note: str) -> None:
    """Replace (or append) the self-contained "## World step" section of ``path``."""
    section = (
        "## World step\n\n"
        "`python tools/bench_world.py` — the embedded town (`townlet.world`), one core "
        f"(thread pools pinned to 1), numpy {np.__version__}, Python "
        f"{platform.python_version()}, {platform.processor() or platform.machine()}. "
        "Towns grow with the population (`scaled_world_config`: the 16×16 default tiled). "
        "Bare step = `step` alone, with actions from the scripted policy computed outside "
        "the timing; the second group times `scripted_actions` + `step` + `observe`. "
        "Each figure is the median of three timed windows after 100 warm-up ticks."
        f"{' ' + note if note else ''}\n\n"
        f"{table}\n"
    )
    replace_section(path, "World step", section)


def main() -> int:
    """Run the benchmark, print the table, optionally write it to a markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per population size")
    parser.add_argument("--write", type=Path, default=None, help="markdown file to update")
    parser.add_argument(
        "--note", default="", help="how the machine was loaded (written into the section)"
    )
    args = parser.parse_args()
    rows = []
    for agents in SIZES:
        bare, full = _bench(agents, args.seconds)
        rows.append((agents, scaled_world_config(agents).size, bare, full))
    table = _table(rows)
    print(table)
    if args.write is not None:
        _write(args.write, table, args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
