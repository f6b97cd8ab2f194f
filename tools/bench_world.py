"""Benchmark the embedded town: world steps/s and agent-steps/s on one core.

Usage: ``python tools/bench_world.py [--seconds 3] [--write docs/benchmarks.md] [--note TEXT]
[--baseline-rev REV [--rounds 2]]``. Measures, for 8, 128 and 2048 agents (towns scaled to keep
the density of the default 16×16 town): the bare world ``step`` (actions from the scripted
policy, computed outside the timed region) and the full loop ``scripted_actions`` + ``step`` +
``observe``. Thread pools are pinned to one thread before numpy is imported. ``--note``: how the
machine was loaded, written into the section.

``--baseline-rev``: also measure the world code (``src/``) as it was at a git revision, in
separate processes alternating with this tree's (``--rounds`` each, medians), and print the
speed-up of this tree against it — the peer measured in the same run.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _benchdoc import replace_section  # noqa: E402
from townlet.world import observe, reset, scaled_world_config, scripted_actions, step  # noqa: E402

SIZES = (8, 128, 2048)
WARMUP_TICKS = 100
REPO = Path(__file__).resolve().parents[1]
Row = tuple[int, int, float, float]  # agents, grid side, s per bare step, s per full tick


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


def _table(rows: list[Row]) -> str:
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


def _measure(seconds: float) -> list[Row]:
    return [
        (agents, scaled_world_config(agents).size, *_bench(agents, seconds)) for agents in SIZES
    ]


def _child_rows(src: Path | None, seconds: float) -> list[Row]:
    """Rows measured in a fresh process, importing ``townlet`` from ``src`` when given."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    cmd = [sys.executable, __file__, "--child", "--seconds", str(seconds)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [(int(a), int(g), float(b), float(f)) for a, g, b, f in json.loads(out)]


def _baseline_src(rev: str, into: Path) -> Path:
    """Extract ``src/`` as it was at ``rev`` into ``into``; ValueError naming a bad rev."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[:1]
        raise ValueError(f"--baseline-rev: cannot read src/ at {rev!r}: {' '.join(reason)}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _median_rows(runs: list[list[Row]]) -> list[Row]:
    return [
        (rows[0][0], rows[0][1], float(np.median([r[2] for r in rows])),
         float(np.median([r[3] for r in rows])))
        for rows in zip(*runs, strict=True)
    ]  # fmt: skip


def _versus(rev: str, base: list[Row], new: list[Row]) -> str:
    lines = [
        f"| agents | bare step: {rev} | this tree | speed-up "
        f"| step+scripted+observe: {rev} | this tree | speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (agents, _, b_bare, b_full), (_, _, n_bare, n_full) in zip(base, new, strict=True):
        lines.append(
            f"| {agents} | {agents / b_bare:,.0f} | {agents / n_bare:,.0f} "
            f"| {b_bare / n_bare:.2f}× | {agents / b_full:,.0f} | {agents / n_full:,.0f} "
            f"| {b_full / n_full:.2f}× |"
        )
    return "\n".join(lines)


def _with_baseline(rev: str, rounds: int, seconds: float) -> tuple[list[Row], str]:
    """This tree's rows and the speed-up table against ``rev`` (alternating processes)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = _baseline_src(rev, Path(tmp))
        base_runs, new_runs = [], []
        for _ in range(rounds):
            base_runs.append(_child_rows(src, seconds))
            new_runs.append(_child_rows(None, seconds))
    new = _median_rows(new_runs)
    return new, _versus(rev, _median_rows(base_runs), new)


def main() -> int:
    """Run the benchmark, print the table, optionally write it to a markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per population size")
    parser.add_argument("--write", type=Path, default=None, help="markdown file to update")
    parser.add_argument(
        "--note", default="", help="how the machine was loaded (written into the section)"
    )
    parser.add_argument("--baseline-rev", default=None, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=2, help="processes per side (baseline)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.seconds)))
        return 0
    if args.rounds < 1:
        parser.error(f"--rounds: expected >= 1, got {args.rounds}")
    versus = ""
    if args.baseline_rev is None:
        rows = _measure(args.seconds)
    else:
        try:
            rows, versus = _with_baseline(args.baseline_rev, args.rounds, args.seconds)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
    table = _table(rows) + (f"\n\nAgainst `{args.baseline_rev}`:\n\n{versus}" if versus else "")
    print(table)
    if args.write is not None:
        _write(args.write, table, args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
