"""PPO from a BC warm start on fresh town rollouts, against the scripted expert and a random policy.

Usage: ``python tools/plot_town_ppo.py [--updates 30] [--ticks 300] [--epochs 4] [--no-write]``
(needs ``pip install -e '.[torch,plot]'``).

1. Capture ``--bc-ticks`` ticks of the scripted expert in the default town (8 agents) and
   behaviour-clone them (``train_bc``, 5 epochs).
2. Repeat ``--updates`` times: capture ``--ticks`` fresh ticks with the current parameters
   (``capture_rollout(WorldConfig(), make_network_policy(params, spec), ...)``), build an
   in-memory dataset (``buffer.build_dataset``, all agents in one batch) and run ``train_ppo``
   on it for ``--epochs`` epochs, continuing the PPO state (parameters, Adam moments, counters).
3. Each update's capture seed is also used to capture the scripted expert and a random policy,
   so the three curves meet the same worlds.

The figure is the mean return per agent over each capture (undiscounted reward sum over
``--ticks`` ticks, averaged over agents) per update. It goes to docs/img/town_ppo.png, and a
section with the numbers to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _benchdoc import replace_section
from townlet.config import BCConfig, PPOConfig
from townlet.policy.rollout import build_rollout_dataset, capture_rollout
from townlet.policy.rollout_torch import make_network_policy
from townlet.policy.training.strategies.bc.train import train_bc
from townlet.policy.training.strategies.ppo.train import train_ppo
from townlet.world import WorldConfig

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Town: PPO from BC on fresh rollouts"


def mean_return(buffer: object) -> float:
    """Per-agent reward sum over the capture, averaged over agents."""
    samples = buffer.samples  # type: ignore[attr-defined]
    return float(np.mean([s.rewards.sum(dtype=np.float64) for s in samples]))


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    """The three curves (one value per update) and the BC accuracy."""
    torch.set_num_threads(1)
    world = WorldConfig()
    demos = capture_rollout(world, "scripted", args.bc_ticks, seed=0)
    bc = train_bc(list(demos.samples), cfg=BCConfig(epochs=5, val_fraction=0.1), seed=0)
    print(f"BC: accuracy {bc.result.accuracy:.3f}, val {bc.result.val_accuracy}", flush=True)
    cfg = PPOConfig(learning_rate=args.lr)
    curves: dict[str, list[float]] = {"ppo": [], "scripted": [], "random": []}
    state = None
    params, spec = bc.params, bc.spec
    for update in range(args.updates):
        seed = 1000 + update
        buffer = capture_rollout(world, make_network_policy(params, spec), args.ticks, seed=seed)
        curves["ppo"].append(mean_return(buffer))
        curves["scripted"].append(mean_return(capture_rollout(world, "scripted", args.ticks, seed)))
        curves["random"].append(mean_return(capture_rollout(world, "random", args.ticks, seed)))
        dataset = build_rollout_dataset(buffer, batch_size=len(buffer.samples))
        if state is None:
            result = train_ppo(dataset, cfg=cfg, epochs=args.epochs, seed=0, init=params)
        else:
            result = train_ppo(dataset, cfg=cfg, epochs=args.epochs, state=state)
        state = result.state
        params = state.params
        print(
            f"update {update + 1}: ppo {curves['ppo'][-1]:.2f} scripted "
            f"{curves['scripted'][-1]:.2f} random {curves['random'][-1]:.2f}",
            flush=True,
        )
    curves["bc_accuracy"] = [float(bc.result.accuracy)]
    return curves


def plot(curves: dict[str, list[float]], path: Path, ticks: int) -> None:
    """Mean return per update of the three policies, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(1, len(curves["ppo"]) + 1)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(x, curves["ppo"], marker="o", ms=3, label="PPO from BC (current policy)")
    ax.plot(x, curves["scripted"], ls="--", label="scripted expert")
    ax.plot(x, curves["random"], ls=":", label="random policy")
    ax.set_xlabel("PPO update (one fresh capture each)")
    ax.set_ylabel(f"mean return per agent over {ticks} ticks")
    ax.set_title("Town, 8 agents: PPO fine-tuning from behaviour cloning")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def section(curves: dict[str, list[float]], args: argparse.Namespace, seconds: float) -> str:
    """The docs/benchmarks.md section with the measured numbers."""
    ppo, scripted, rand = curves["ppo"], curves["scripted"], curves["random"]
    last = max(1, len(ppo) // 5)
    return "\n".join(
        [
            f"## {HEADING}",
            "",
            f"`python tools/plot_town_ppo.py` — the default town (8 agents). BC on "
            f"{args.bc_ticks} ticks of the scripted expert (5 epochs, training accuracy "
            f"{curves['bc_accuracy'][0]:.3f}), then {args.updates} PPO updates, each on a fresh "
            f"{args.ticks}-tick capture with the current parameters (`train_ppo`, {args.epochs} "
            f"epochs, default `PPOConfig` with lr {args.lr:g}, the state carried over). The "
            "scripted expert and a random policy are captured with the same seeds. Return = "
            f"per-agent reward sum over the {args.ticks} ticks, averaged over agents. "
            f"{seconds:.0f} s in all, one thread.",
            "",
            "![town PPO](img/town_ppo.png)",
            "",
            "| policy | first update | mean of last " + str(last) + " updates | mean of all |",
            "|---|---:|---:|---:|",
            f"| PPO from BC | {ppo[0]:.2f} | {statistics.mean(ppo[-last:]):.2f} | "
            f"{statistics.mean(ppo):.2f} |",
            f"| scripted expert | {scripted[0]:.2f} | {statistics.mean(scripted[-last:]):.2f} | "
            f"{statistics.mean(scripted):.2f} |",
            f"| random | {rand[0]:.2f} | {statistics.mean(rand[-last:]):.2f} | "
            f"{statistics.mean(rand):.2f} |",
            "",
            "Update 1 is the BC policy itself, acting by sampling from its softmax;"
            " each later point is the policy after one more "
            "PPO update, measured on the next update's fresh capture.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Train, plot, and write the docs section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--bc-ticks", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    curves = run(args)
    seconds = time.perf_counter() - start
    text = section(curves, args, seconds)
    print(text)
    if not args.no_write:
        plot(curves, ROOT / "docs" / "img" / "town_ppo.png", args.ticks)
        replace_section(ROOT / "docs" / "benchmarks.md", HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
