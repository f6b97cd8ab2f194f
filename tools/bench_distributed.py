"""Data-parallel scaling: 1 vs N ranks (torchrun, gloo) on this machine, in one run.

Usage: ``python tools/bench_distributed.py [--ranks 2] [--rounds 3] [--no-write]``

Two workloads, each launched with ``torchrun --standalone --nproc-per-node R`` for R = 1 and
R = ``--ranks`` (one torch thread per rank), interleaved over ``--rounds`` rounds; the median
round counts:

* **town capture + rollout PPO** — an anneal schedule of PPO stages on fresh town rollouts
  (``run_anneal_with_state(rollout=RolloutPlan(...))``): every rank captures its own town
  (``AGENTS`` agents × ``TICKS`` ticks, its rank seed) with the current parameters and trains on
  it, gradients averaged across ranks once per minibatch.
* **online CartPole** — ``train_ppo_online`` on ``gymnasium:CartPole-v1``: every rank steps its
  own ``NUM_ENVS`` copies.

Per-rank work is fixed, so R ranks do R times the work: throughput is global transitions
(environment steps trained on, all ranks) per wall second of the training call (timed on rank 0
between two barriers: process start, imports and rendezvous are left out), the speedup is
R-rank ÷ 1-rank throughput and the scaling efficiency is speedup ÷ R. ``uptime`` is recorded
before and after: on a shared machine other processes take cores from the ranks. The table goes
to stdout and into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HEADING = "Data-parallel scaling (torchrun, gloo)"
AGENTS, TICKS, PPO_STAGES, PPO_EPOCHS = 8, 200, 3, 2
NUM_ENVS, ROLLOUT, ONLINE_UPDATES = 8, 256, 6
WORKLOADS = ("capture_ppo", "online")


def _capture_ppo(group: Any) -> int:
    """Anneal PPO stages on fresh town rollouts; returns global transitions trained on."""
    from townlet.config import AnnealStage, Config, TrainingConfig
    from townlet.policy.training.strategies.anneal.data import RolloutPlan
    from townlet.policy.training.strategies.anneal.run import run_anneal_with_state
    from townlet.world import WorldConfig

    stages = [AnnealStage(cycle=i + 1, mode="ppo", epochs=PPO_EPOCHS) for i in range(PPO_STAGES)]
    config = Config(training=TrainingConfig(anneal_schedule=stages))
    plan = RolloutPlan(world=WorldConfig(num_agents=AGENTS), ticks=TICKS, batch_size=AGENTS)
    run_anneal_with_state(config, rollout=plan, seed=0, quiet=True, group=group)
    return AGENTS * TICKS * PPO_STAGES * group.world_size


def _online(group: Any) -> int:
    """Online PPO on CartPole; returns global environment steps trained on."""
    from townlet.config import PPOConfig
    from townlet.policy.training.strategies.ppo.online import train_ppo_online

    cfg = PPOConfig(num_epochs=4, mini_batch_size=64, num_mini_batches=32, value_clip=0.0)
    # total_steps is the global budget: ONLINE_UPDATES updates whatever the rank count.
    steps = ONLINE_UPDATES * NUM_ENVS * ROLLOUT * group.world_size
    train_ppo_online("gymnasium:CartPole-v1", steps, NUM_ENVS, ROLLOUT, cfg, 0, group=group)
    return steps


def worker(workload: str) -> None:
    """One rank: join the group, time the workload between two barriers, rank 0 prints JSON."""
    from townlet.distributed import launch_info
    from townlet.distributed.group import barrier, process_group

    with process_group(launch_info(os.environ), timeout_s=600) as group:
        barrier(group)
        start = time.perf_counter()
        transitions = {"capture_ppo": _capture_ppo, "online": _online}[workload](group)
        barrier(group)
        wall = time.perf_counter() - start
    if group.is_root:
        print(json.dumps({"transitions": transitions, "wall": wall}))


def launch(workload: str, ranks: int) -> dict[str, float]:
    """Run ``workload`` on ``ranks`` processes under torchrun; rank 0's JSON."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [str(torchrun), "--standalone", f"--nproc-per-node={ranks}", __file__]
    done = subprocess.run(
        [*command, "--worker", workload], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{workload} on {ranks} ranks failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def measure(ranks: int, rounds: int) -> dict[str, dict[int, list[float]]]:
    """Throughputs (transitions/s) by workload and rank count, one per round, interleaved."""
    out: dict[str, dict[int, list[float]]] = {w: {1: [], ranks: []} for w in WORKLOADS}
    for _ in range(rounds):
        for workload in WORKLOADS:
            for r in (1, ranks):
                result = launch(workload, r)
                out[workload][r].append(result["transitions"] / result["wall"])
                print(f"{workload} ranks={r}: {out[workload][r][-1]:,.0f}/s", file=sys.stderr)
    return out


def table(results: dict[str, dict[int, list[float]]], ranks: int) -> list[str]:
    """Markdown rows: workload, median 1-rank and R-rank throughput, and the median of the
    per-round speedups (each round's R-rank run against the 1-rank run right before it, so a
    change of machine load between rounds cancels) with its range and efficiency."""
    names = {"capture_ppo": "town capture + rollout PPO", "online": "online PPO, CartPole-v1"}
    rows = [
        f"| workload | 1 rank (transitions/s) | {ranks} ranks (transitions/s) | speedup "
        "(per round) | efficiency |",
        "|---|---:|---:|---:|---:|",
    ]
    for workload, by_rank in results.items():
        one, many = statistics.median(by_rank[1]), statistics.median(by_rank[ranks])
        ratios = [b / a for a, b in zip(by_rank[1], by_rank[ranks], strict=True)]
        speedup = statistics.median(ratios)
        spread = ", ".join(f"{r:.2f}" for r in ratios)
        rows.append(
            f"| {names[workload]} | {one:,.0f} | {many:,.0f} | **{speedup:.2f}×** ({spread}) | "
            f"{speedup / ranks:.0%} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker)
        return
    before = _uptime()
    results = measure(args.ranks, args.rounds)
    after = _uptime()
    import torch

    lines = [
        f"## {HEADING}",
        "",
        f"`python tools/bench_distributed.py --ranks {args.ranks} --rounds {args.rounds}` — "
        f"torchrun --standalone, gloo on loopback, one torch thread per rank, torch "
        f"{torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} cores "
        f"({platform.machine()}). Median of {args.rounds} interleaved rounds. Capture + PPO: "
        f"{PPO_STAGES} anneal PPO stages of {PPO_EPOCHS} epochs, each on a fresh capture of "
        f"{AGENTS} agents × {TICKS} ticks per rank. CartPole: {ONLINE_UPDATES} updates of "
        f"{NUM_ENVS} copies × {ROLLOUT} steps per rank, 4 epochs of minibatch 64. Throughput "
        "is global transitions per second of the timed call (rank 0, between barriers).",
        "",
        *table(results, args.ranks),
        "",
        f"Load (`uptime`): `{before}` before, `{after}` after. On a machine shared with other "
        "jobs the ranks compete with them for the cores, so the speedup is bounded by the share "
        "of the cores two processes get, not by the code; re-run on a quiet machine for the "
        "code's own scaling.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).parent))
        from _benchdoc import replace_section

        replace_section(Path(__file__).parents[1] / "docs" / "benchmarks.md", HEADING, text)


if __name__ == "__main__":
    main()
