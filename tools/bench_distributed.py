"""Data-parallel scaling: 1 vs N ranks (torchrun, gloo) on this machine, in one run.

Usage: ``python tools/bench_distributed.py [--ranks 2] [--rounds 3] [--workload W ...]
[--no-write] [--phases]``

Each workload is launched with ``torchrun --standalone --nproc-per-node R`` for R = 1 and
R = ``--ranks`` (one torch thread per rank), interleaved over ``--rounds`` rounds; the median
round counts. ``--workload`` (repeatable) measures some of them and keeps the other rows of
docs/benchmarks.md; ``--phases`` instead runs each once per rank count with per-rank phase
timers (``_dist_phases.py``) and prints them.

* **town capture + rollout PPO** (``capture_ppo``, ``capture_ppo_large``,
  ``capture_ppo_large_mb32``) — an anneal schedule of PPO stages on fresh town rollouts
  (``run_anneal_with_state(rollout=RolloutPlan(...))``): every rank captures its own town
  (``AGENTS`` or ``LARGE_AGENTS`` agents × ``TICKS`` ticks, its rank seed) with the current
  parameters and trains on it, gradients averaged across ranks once per minibatch: minibatches
  of the default 32 rows, or ``LARGE_MINIBATCHES`` per batch.
* **online CartPole** — ``train_ppo_online`` on ``gymnasium:CartPole-v1``: every rank steps its
  own ``NUM_ENVS`` copies.

Per-rank work is fixed, so R ranks do R times the work: throughput is global transitions
(environment steps trained on, all ranks) per wall second of the training call (timed on rank 0
between two barriers: process start, imports and rendezvous are left out), the speedup is
R-rank ÷ 1-rank throughput and the scaling efficiency is speedup ÷ R. The 1-minute load average
(``uptime``) at the start is recorded with each row: on a shared machine other processes take
cores from the ranks. The table goes to stdout and into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HEADING = "Data-parallel scaling (torchrun, gloo)"
AGENTS, TICKS, PPO_STAGES, PPO_EPOCHS = 8, 200, 3, 2
LARGE_AGENTS, LARGE_MINIBATCHES = 128, 4
NUM_ENVS, ROLLOUT, ONLINE_UPDATES = 8, 256, 6
WORKLOADS = ("capture_ppo", "capture_ppo_large", "capture_ppo_large_mb32", "online")
NAMES = {
    "capture_ppo": f"town capture + rollout PPO, {AGENTS} agents/rank, minibatch 32",
    "capture_ppo_large": f"town capture + rollout PPO, {LARGE_AGENTS} agents/rank, "
    f"{LARGE_MINIBATCHES} minibatches/batch",
    "capture_ppo_large_mb32": f"town capture + rollout PPO, {LARGE_AGENTS} agents/rank, "
    "minibatch 32",
    "online": "online PPO, CartPole-v1",
}


def _anneal_rollouts(group: Any, agents: int, minibatches: int | None) -> int:
    """Anneal PPO stages on fresh town rollouts of ``agents`` agents per rank (one batch of
    all of them); ``minibatches`` per batch, or the default minibatch of 32 rows. Returns the
    global transitions trained on."""
    import attrs

    from townlet.config import AnnealStage, Config, PPOConfig, TrainingConfig
    from townlet.policy.training.strategies.anneal.data import RolloutPlan
    from townlet.policy.training.strategies.anneal.run import run_anneal_with_state
    from townlet.world import WorldConfig

    stages = [AnnealStage(cycle=i + 1, mode="ppo", epochs=PPO_EPOCHS) for i in range(PPO_STAGES)]
    ppo = PPOConfig()
    if minibatches is not None:
        ppo = attrs.evolve(ppo, mini_batch_size=agents * TICKS, num_mini_batches=minibatches)
    config = Config(training=TrainingConfig(anneal_schedule=stages), ppo=ppo)
    plan = RolloutPlan(world=WorldConfig(num_agents=agents), ticks=TICKS, batch_size=agents)
    run_anneal_with_state(config, rollout=plan, seed=0, quiet=True, group=group)
    return agents * TICKS * PPO_STAGES * group.world_size


def _capture_ppo(group: Any) -> int:
    return _anneal_rollouts(group, AGENTS, None)


def _capture_ppo_large(group: Any) -> int:
    return _anneal_rollouts(group, LARGE_AGENTS, LARGE_MINIBATCHES)


def _capture_ppo_large_mb32(group: Any) -> int:
    return _anneal_rollouts(group, LARGE_AGENTS, None)


def _online(group: Any) -> int:
    """Online PPO on CartPole; returns global environment steps trained on."""
    from townlet.config import PPOConfig
    from townlet.policy.training.strategies.ppo.online import train_ppo_online

    cfg = PPOConfig(num_epochs=4, mini_batch_size=64, num_mini_batches=32, value_clip=0.0)
    # total_steps is the global budget: ONLINE_UPDATES updates whatever the rank count.
    steps = ONLINE_UPDATES * NUM_ENVS * ROLLOUT * group.world_size
    train_ppo_online("gymnasium:CartPole-v1", steps, NUM_ENVS, ROLLOUT, cfg, 0, group=group)
    return steps


def worker(workload: str, phases: str | None) -> None:
    """One rank: join the group, time the workload between two barriers, rank 0 prints JSON
    (with a ``phases`` directory, every rank writes its phase timers there)."""
    from townlet.distributed import launch_info
    from townlet.distributed.group import barrier, process_group

    if phases:
        sys.path.insert(0, str(Path(__file__).parent))
        import _dist_phases

        _dist_phases.install()
    with process_group(launch_info(os.environ), timeout_s=600) as group:
        barrier(group)
        start = time.perf_counter()
        run = {
            "capture_ppo": _capture_ppo,
            "capture_ppo_large": _capture_ppo_large,
            "capture_ppo_large_mb32": _capture_ppo_large_mb32,
            "online": _online,
        }[workload]
        transitions = run(group)
        barrier(group)
        wall = time.perf_counter() - start
    if phases:
        report = {"rank": group.rank, "wall": wall, **_dist_phases.report()}
        (Path(phases) / f"rank{group.rank}.json").write_text(json.dumps(report))
    if group.is_root:
        print(json.dumps({"transitions": transitions, "wall": wall}), flush=True)


def launch(workload: str, ranks: int, phases: bool = False) -> dict[str, Any]:
    """Run ``workload`` on ``ranks`` processes under torchrun; rank 0's JSON (with ``phases``,
    every rank's phase timers under ``"phases"``)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [str(torchrun), "--standalone", f"--nproc-per-node={ranks}", __file__]
    with tempfile.TemporaryDirectory() as folder:
        extra = ["--phases-dir", folder] if phases else []
        done = subprocess.run(
            [*command, "--worker", workload, *extra],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"{workload} on {ranks} ranks failed:\n{done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        if phases:
            files = sorted(Path(folder).glob("rank*.json"))
            result["phases"] = [json.loads(f.read_text()) for f in files]
    return result


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _load(uptime: str) -> str:
    """The 1-minute load average in an ``uptime`` line."""
    match = re.search(r"load averages?: ([0-9.]+)", uptime)
    return match.group(1) if match else "?"


def measure(workloads: list[str], ranks: int, rounds: int) -> dict[str, dict[int, list[float]]]:
    """Throughputs (transitions/s) by workload and rank count, one per round, interleaved."""
    out: dict[str, dict[int, list[float]]] = {w: {1: [], ranks: []} for w in workloads}
    for _ in range(rounds):
        for workload in workloads:
            for r in (1, ranks):
                result = launch(workload, r)
                out[workload][r].append(result["transitions"] / result["wall"])
                print(f"{workload} ranks={r}: {out[workload][r][-1]:,.0f}/s", file=sys.stderr)
    return out


def table_rows(
    results: dict[str, dict[int, list[float]]], ranks: int, rounds: int, load: str
) -> dict[str, str]:
    """A markdown row per workload: median 1-rank and R-rank throughput, and the median of the
    per-round speedups (each round's R-rank run against the 1-rank run right before it, so a
    change of machine load between rounds cancels) with its range, efficiency and the load."""
    rows = {}
    for workload, by_rank in results.items():
        one, many = statistics.median(by_rank[1]), statistics.median(by_rank[ranks])
        ratios = [b / a for a, b in zip(by_rank[1], by_rank[ranks], strict=True)]
        speedup = statistics.median(ratios)
        spread = ", ".join(f"{r:.2f}" for r in ratios)
        rows[workload] = (
            f"| {NAMES[workload]} | {one:,.0f} | {many:,.0f} | **{speedup:.2f}×** ({spread}) | "
            f"{speedup / ranks:.0%} | {rounds} | {load} |"
        )
    return rows


def _merged_rows(doc: Path, rows: dict[str, str]) -> list[str]:
    """``rows`` with the rows of workloads not measured now kept from ``doc``'s section."""
    old = doc.read_text() if doc.exists() else ""
    section = old.split(f"## {HEADING}\n", 1)[-1].split("\n## ", 1)[0] if HEADING in old else ""
    merged = []
    for workload in WORKLOADS:
        kept = [x for x in section.splitlines() if x.startswith(f"| {NAMES[workload]} |")]
        if workload in rows:
            merged.append(rows[workload])
        elif kept:
            merged.append(kept[0])
    return merged


def section(rows: list[str], ranks: int) -> str:
    """The docs/benchmarks.md section: how it was measured and the table."""
    import torch

    lines = [
        f"## {HEADING}",
        "",
        f"`python tools/bench_distributed.py --ranks {ranks} [--workload W]` — torchrun "
        "--standalone, gloo on loopback, one torch thread per rank, torch "
        f"{torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} cores "
        f"({platform.machine()}). Median of interleaved rounds. Town capture + PPO: "
        f"{PPO_STAGES} anneal PPO stages of {PPO_EPOCHS} epochs, each on a fresh capture of "
        f"the agents × {TICKS} ticks per rank (one batch per rank), minibatches of 32 rows "
        f"(the default `PPOConfig`) or {LARGE_MINIBATCHES} minibatches per batch (6,400 rows). "
        f"CartPole: {ONLINE_UPDATES} updates of {NUM_ENVS} copies × {ROLLOUT} steps per rank, 4 "
        "epochs of minibatch 64. Throughput is global transitions per second of the timed call "
        "(rank 0, between barriers). Load: the 1-minute load average when the row's run "
        "started (`uptime`); it still carries the jobs that ran just before — measure through "
        "`/work/cpulock.py quiet` or on an idle machine so that nothing else runs meanwhile.",
        "",
        f"| workload | 1 rank (transitions/s) | {ranks} ranks (transitions/s) | speedup "
        "(per round) | efficiency | rounds | load |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--phases-dir", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workload",
        action="append",
        choices=WORKLOADS,
        help="measure only this workload (repeatable; default: all). The rows of the others "
        "stay as they are in docs/benchmarks.md",
    )
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="print every rank's phase timers (capture, dataset, PPO, collectives) for one "
        "1-rank and one R-rank run of each workload, instead of the table",
    )
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.phases_dir)
        return
    workloads = args.workload or list(WORKLOADS)
    if args.phases:
        for workload in workloads:
            for r in (1, args.ranks):
                print(json.dumps({workload: r, **launch(workload, r, phases=True)}, indent=1))
        return
    load = _load(_uptime())
    results = measure(workloads, args.ranks, args.rounds)
    rows = table_rows(results, args.ranks, args.rounds, load)
    doc = Path(__file__).parents[1] / "docs" / "benchmarks.md"
    text = section(_merged_rows(doc, rows), args.ranks)
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).parent))
        from _benchdoc import replace_section

        replace_section(doc, HEADING, text)


if __name__ == "__main__":
    main()
