"""Online PPO on CartPole-v1: townlet vs Stable-Baselines3, same run, same machine.

Usage: ``python tools/bench_cartpole.py [--seeds 5] [--steps 100000] [--no-write]``
(needs ``pip install -e '.[torch,bench]'``).

For each seed, alternating: townlet's :func:`train_ppo_online` and SB3's ``PPO("MlpPolicy")``
train for ``--steps`` environment steps with SB3's classic-control defaults (2048 steps per
update — SB3: 1 env × 2048, ours: 8 envs × 256 —, minibatch 64, 10 epochs, lr 3e-4, γ 0.99,
λ 0.95, clip 0.2, no value clipping, entropy 0, value coefficient 0.5, max grad norm 0.5,
64-64 tanh actor and a separate 64-64 tanh critic, orthogonal init), one torch thread each.
Wall time covers making the environments and the model and training; each trained policy is
then evaluated with :func:`townlet.policy.evaluate.evaluate_policy` on the same 20 seeded
episodes, deterministic (argmax). The floor is measured before and after, in chunks (the
fastest chunk counts): bare stepping of 8 copies with one batched forward pass per step for the
same number of steps, plus the same number of minibatch updates of the same two MLPs with
``loss.backward()`` + ``torch.optim.Adam`` on random data. The table goes to stdout and into
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from _benchdoc import replace_section
from townlet.config import PPOConfig
from townlet.envs.gymnasium_adapter import make_gymnasium_source
from townlet.policy.evaluate import evaluate_policy
from townlet.policy.rollout_torch import make_network_policy
from townlet.policy.training.strategies.ppo.online import train_ppo_online

ENV = "CartPole-v1"
NUM_ENVS, ROLLOUT = 8, 256
EVAL_EPISODES, EVAL_SEED = 20, 10_000
HEADING = "CartPole: online PPO vs Stable-Baselines3"
CFG = PPOConfig(
    learning_rate=3e-4,
    num_epochs=10,
    mini_batch_size=64,
    num_mini_batches=32,
    gamma=0.99,
    gae_lambda=0.95,
    clip_param=0.2,
    value_clip=0.0,
    entropy_coef=0.0,
    value_loss_coef=0.5,
    max_grad_norm=0.5,
)


def run_ours(seed: int, steps: int) -> tuple[float, float]:
    """Wall seconds of training and the deterministic evaluation return."""
    start = time.perf_counter()
    run = train_ppo_online(f"gymnasium:{ENV}", steps, NUM_ENVS, ROLLOUT, CFG, seed)
    wall = time.perf_counter() - start
    policy = make_network_policy(run.params, run.spec)
    evaluation = evaluate_policy(
        policy,
        f"gymnasium:{ENV}",
        episodes=EVAL_EPISODES,
        seed=EVAL_SEED + seed,
        deterministic=True,
    )
    return wall, evaluation.mean


class SB3Policy:
    """An SB3 model as a townlet policy object, so both are evaluated by the same code."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def act(
        self, maps: Any, features: np.ndarray[Any, Any], rng: np.random.Generator
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        actions, _ = self.model.predict(features, deterministic=True)
        n = features.shape[0]
        return np.asarray(actions, dtype=np.int64), np.zeros(n, np.float32), np.zeros(n, np.float32)


def run_sb3(seed: int, steps: int) -> tuple[float, float]:
    """SB3 PPO with its defaults (which are the classic-control settings above)."""
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    start = time.perf_counter()
    model = PPO("MlpPolicy", ENV, seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    evaluation = evaluate_policy(
        SB3Policy(model),
        f"gymnasium:{ENV}",
        episodes=EVAL_EPISODES,
        seed=EVAL_SEED + seed,
        deterministic=True,
    )
    return wall, evaluation.mean


def _mlp(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, outputs)
    )


def floor_env(steps: int) -> float:
    """Seconds to step 8 copies for ``steps`` total steps, one batched forward pass per step."""
    torch.set_num_threads(1)
    source = make_gymnasium_source(ENV, num_envs=NUM_ENVS)
    actor, critic = _mlp(4, 2), _mlp(4, 1)
    gen = torch.Generator().manual_seed(0)
    obs = source.reset(0)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(math.ceil(steps / NUM_ENVS)):
            x = torch.from_numpy(obs)
            probs = torch.softmax(actor(x), dim=-1)
            critic(x)
            actions = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            obs = source.step(actions.numpy()).observations
    source.close()
    return time.perf_counter() - start


def floor_updates(updates: int, *, foreach: bool) -> float:
    """Seconds for ``updates`` PPO minibatch updates (64 rows) of the two MLPs, imperative;
    ``foreach`` picks torch's list-kernel Adam (on CPU the default is a per-tensor loop)."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    actor, critic = _mlp(4, 2), _mlp(4, 1)
    params = [*actor.parameters(), *critic.parameters()]
    opt = torch.optim.Adam(params, lr=3e-4, eps=1e-5, foreach=foreach)
    obs, actions = torch.randn(64, 4, generator=gen), torch.randint(0, 2, (64,), generator=gen)
    adv, ret, old_logp = (torch.randn(64, generator=gen) for _ in range(3))
    start = time.perf_counter()
    for _ in range(updates):
        logp = torch.log_softmax(actor(obs), -1).gather(1, actions[:, None]).squeeze(1)
        ratio = torch.exp(logp - old_logp)
        policy = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv).mean()
        value = (critic(obs).squeeze(-1) - ret).pow(2).mean()
        loss = policy + 0.5 * value
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
    return time.perf_counter() - start


FLOOR_CHUNKS = 7


def _floor(steps: int) -> tuple[float, float, float]:
    """(env stepping, updates with torch's default CPU Adam, updates with foreach Adam), each
    the fastest of ``FLOOR_CHUNKS`` equal chunks times the chunk count: a lower bound that a
    burst of load on the machine during one chunk does not raise."""
    updates = math.ceil(steps / (NUM_ENVS * ROLLOUT)) * 10 * (NUM_ENVS * ROLLOUT // 64)
    env_chunks = [floor_env(steps // FLOOR_CHUNKS) for _ in range(FLOOR_CHUNKS)]
    loop_chunks = [floor_updates(updates // FLOOR_CHUNKS, foreach=False) for _ in range(3)]
    foreach_chunks = [
        floor_updates(updates // FLOOR_CHUNKS, foreach=True) for _ in range(FLOOR_CHUNKS)
    ]
    return (
        min(env_chunks) * FLOOR_CHUNKS,
        min(loop_chunks) * FLOOR_CHUNKS,
        min(foreach_chunks) * FLOOR_CHUNKS,
    )


def _section(
    rows: list[dict[str, float]], floors: list[tuple[float, float, float]], steps: int
) -> str:
    ratios = [r["ratio"] for r in rows]
    env_s = min(f[0] for f in floors)
    loop_s = min(f[1] for f in floors)
    upd_s = min(f[2] for f in floors)
    median_sb3 = statistics.median(r["sb3_wall"] for r in rows)
    updates = math.ceil(steps / (NUM_ENVS * ROLLOUT)) * 10 * (NUM_ENVS * ROLLOUT // 64)
    lines = [
        f"## {HEADING}",
        "",
        f"`python tools/bench_cartpole.py` — {ENV}, {steps:,} steps per run, SB3's classic-control "
        "defaults on both sides (2048 steps per update: SB3 1 env × 2048, townlet 8 envs × 256; "
        "minibatch 64, 10 epochs, lr 3e-4, γ 0.99, λ 0.95, clip 0.2, no value clip, entropy 0, "
        "value coef 0.5, max grad norm 0.5, 64-64 tanh actor + separate 64-64 tanh critic, "
        "orthogonal init), one torch thread each, run alternately per seed in one process. Eval: "
        f"{EVAL_EPISODES} seeded episodes, deterministic, same evaluator and seeds for both. "
        f"torch {torch.__version__}, stable-baselines3 {version('stable-baselines3')}, "
        f"gymnasium {version('gymnasium')}, Python {platform.python_version()}, "
        f"{platform.machine()}; 1-minute load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| seed | townlet s | townlet eval | SB3 s | SB3 eval | ratio (townlet/SB3) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['seed'])} | {r['ours_wall']:.1f} | {r['ours_eval']:.1f} | "
            f"{r['sb3_wall']:.1f} | {r['sb3_eval']:.1f} | {r['ratio']:.2f} |"
        )
    solved = sum(1 for r in rows if r["ours_eval"] >= 475)
    lines += [
        "",
        f"Median ratio **{statistics.median(ratios):.2f}**; townlet evaluates ≥ 475 in "
        f"{solved} of {len(rows)} seeds, SB3 in {sum(1 for r in rows if r['sb3_eval'] >= 475)}.",
        "",
        f"Imperative floor (measured before and after the runs in {FLOOR_CHUNKS} equal chunks "
        "each; the fastest chunk times the chunk count, so a lower bound): stepping 8 copies "
        f"with one batched forward pass per step for {steps:,} steps, {env_s:.1f} s, plus the "
        f"same {updates:,} minibatch updates of the two MLPs (PPO clip loss + value loss, "
        f"`loss.backward()`, `clip_grad_norm_`, `torch.optim.Adam(foreach=True)`) on random "
        f"data, {upd_s:.1f} s: **{env_s + upd_s:.1f} s**, a ratio of "
        f"{(env_s + upd_s) / median_sb3:.2f} to SB3's median. With torch's default CPU Adam "
        f"(a per-tensor loop) the updates take {loop_s:.1f} s. This bounds a loop that takes "
        "its gradients with `loss.backward()`; townlet's update writes its gradient out "
        "(docs/nn.md), so its runs can go below it. Where the time goes: "
        "[online.md](online.md#speed-where-the-time-goes).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the section, and write it into docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    floors = [_floor(args.steps)]
    rows = []
    for seed in range(args.seeds):
        ours_wall, ours_eval = run_ours(seed, args.steps)
        sb3_wall, sb3_eval = run_sb3(seed, args.steps)
        row = {
            "seed": seed,
            "ours_wall": ours_wall,
            "ours_eval": ours_eval,
            "sb3_wall": sb3_wall,
            "sb3_eval": sb3_eval,
            "ratio": ours_wall / sb3_wall,
        }
        print(row, flush=True)
        rows.append(row)
    floors.append(_floor(args.steps))
    section = _section(rows, floors, args.steps)
    print(section)
    if not args.no_write:
        replace_section(
            Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md", HEADING, section
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
