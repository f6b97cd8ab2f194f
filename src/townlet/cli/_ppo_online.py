"""``townlet-train ppo --env gymnasium:<id>``: online PPO on a Gymnasium environment.

Trains with :func:`~townlet.policy.training.strategies.ppo.online.train_ppo_online`, evaluates
the final policy (deterministic, ``--eval-episodes`` seeded episodes), prints a JSON summary and,
with ``--out DIR``, writes ``DIR/checkpoint.pt``, ``DIR/telemetry.jsonl`` (one line per update)
and ``DIR/summary.json``. With ``--checkpoint-every N`` it also checkpoints every N updates
(``resume.pt`` + ``resume_env.jsonl``, :mod:`~townlet.policy.training.online_resume`), and
``townlet-train resume DIR`` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from townlet._atomic import write_text_atomic
from townlet.cli import UsageError
from townlet.cli._launch import collective
from townlet.cli._resumable import RunPlan, plan_run
from townlet.cli._train_common import progress_bar
from townlet.config import PPOConfig
from townlet.dto.policy import PPOTrainingResult
from townlet.envs.gymnasium_adapter import MAX_ENV_COPIES

CHECKPOINT_NAME = "checkpoint.pt"
TELEMETRY_NAME = "telemetry.jsonl"
SUMMARY_NAME = "summary.json"
WEIGHT_INITS = ("orthogonal", "torch_default")


def add_online_options(parser: argparse.ArgumentParser) -> None:
    """The options of online runs (``--env`` itself is in the data-source group)."""
    group = parser.add_argument_group("online PPO (with --env)")
    group.add_argument("--total-steps", type=int, help="environment steps to train for")
    group.add_argument("--num-envs", type=int, default=8, help="environment copies (8)")
    group.add_argument(
        "--rollout-steps", type=int, default=256, help="steps per copy per update (256)"
    )
    group.add_argument("--hidden", type=int, default=64, help="hidden width (64)")
    group.add_argument("--activation", choices=("tanh", "relu"), default="tanh")
    group.add_argument(
        "--critic", choices=("separate", "shared"), default="separate", help="value trunk"
    )
    group.add_argument(
        "--eval-episodes", type=int, default=20, help="deterministic evaluation episodes (20)"
    )


def _check(args: argparse.Namespace) -> None:
    if args.total_steps is None:
        raise UsageError("--env needs --total-steps N")
    for flag, value in (
        ("--total-steps", args.total_steps),
        ("--num-envs", args.num_envs),
        ("--rollout-steps", args.rollout_steps),
        ("--hidden", args.hidden),
        ("--eval-episodes", args.eval_episodes),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    if args.num_envs > MAX_ENV_COPIES:
        raise UsageError(f"--num-envs must be <= {MAX_ENV_COPIES}, got {args.num_envs}")
    if args.epochs is not None or args.batch_size is not None or args.critic_warmup_epochs:
        raise UsageError(
            "--epochs, --batch-size and --critic-warmup-epochs are for replay data; "
            "with --env use --ppo-num-epochs and --ppo-mini-batch-size"
        )


def _init(args: argparse.Namespace) -> tuple[str, Any]:
    """(weight scheme, checkpoint or None) from ``--init``."""
    if args.init is None:
        return "orthogonal", None
    if str(args.init) in WEIGHT_INITS:
        return str(args.init), None
    if not args.init.is_file():
        raise UsageError(
            f"--init must be orthogonal, torch_default or a checkpoint file; {str(args.init)!r} "
            "is none of these"
        )
    return "orthogonal", args.init


def run_online(args: argparse.Namespace, cfg: PPOConfig, seed: int) -> dict[str, Any] | None:
    """Train, evaluate and write the outputs; return the JSON summary (None on ranks > 0 under
    torchrun: every rank trains on its own copies, rank 0 evaluates and writes)."""
    from townlet.policy.evaluate import evaluate_policy
    from townlet.policy.rollout_torch import make_network_policy
    from townlet.policy.training.strategies.ppo.online import OnlinePPOConfig, train_ppo_online

    _check(args)
    if args.init is not None and str(args.init) in WEIGHT_INITS:
        args.init = str(args.init)  # a scheme's name, not a path (as run.json records it)
    weight_init, checkpoint = _init(args)
    group = collective(args)
    log = args.log
    if args.out is not None:
        if group.is_root:
            args.out.mkdir(parents=True, exist_ok=True)
        log = log or args.out / TELEMETRY_NAME
    per_update = args.num_envs * args.rollout_steps * group.world_size
    updates = -(-args.total_steps // per_update)
    plan = _plan(args, cfg, seed, updates, log, checkpoint, world_size=group.world_size)
    with progress_bar(updates, quiet=args.quiet or not group.is_root, desc="ppo") as bar:

        def progress(update: int, record: PPOTrainingResult) -> None:
            bar.update(1)
            if record.episode_return_mean is not None:
                bar.set_postfix(ret=f"{record.episode_return_mean:.1f}")

        settings = OnlinePPOConfig(
            total_steps=args.total_steps,
            num_envs=args.num_envs,
            rollout_steps=args.rollout_steps,
            hidden_dim=args.hidden,
            activation=args.activation,
            weight_init=weight_init,  # type: ignore[arg-type]
            critic=args.critic,
            device=args.device,
            threads=args.threads or 1,
        )
        run = train_ppo_online(
            args.env,
            cfg=cfg,
            seed=seed,
            online=settings,
            init=checkpoint if plan.start is None else None,
            sinks=plan.sinks,
            start=None if plan.start is None else plan.start.state,
            log_path=log,
            log_frequency=args.log_frequency,
            max_log_entries=args.log_max_entries,
            progress=progress,
            group=group,
        )
    if not group.is_root:
        return None
    # The device the run trained on ("auto" resolved), for the evaluation episodes.
    device = str(next(iter(run.params.values())).device)
    policy = make_network_policy(run.params, run.spec, device=device)
    evaluation = evaluate_policy(
        policy,
        f"gymnasium:{run.env_id}",
        episodes=args.eval_episodes,
        seed=seed,
        deterministic=True,
    )
    last = run.history[-1]
    summary = {
        "env": f"gymnasium:{run.env_id}",
        "env_steps": run.env_steps,
        "updates": len(run.history),
        "wall_seconds": run.wall_seconds,
        "episodes": len(run.episode_returns),
        "episode_return_mean": last.episode_return_mean,
        "eval_return_mean": evaluation.mean,
        "eval_return_std": evaluation.std,
        "eval_mode": evaluation.mode,
        "eval_episodes": evaluation.episodes,
        "seed": seed,
        "network": run.spec.to_dict(),
    }
    if args.out is not None:
        from townlet.dto.convert import to_dict
        from townlet.policy.training.strategies.ppo.checkpoint import save_ppo_state

        extra = {"ppo": to_dict(cfg), "env": summary["env"], "env_steps": run.env_steps}
        save_ppo_state(args.out / CHECKPOINT_NAME, run.state, extra=extra)
        write_text_atomic(args.out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
        plan.finish()
    return summary


def _plan(
    args: argparse.Namespace,
    cfg: PPOConfig,
    seed: int,
    updates: int,
    log: Path | None,
    init: Path | None,
    *,
    world_size: int,
) -> RunPlan:
    """``--checkpoint-every``: the run's checkpoint sink, or where a resumed run starts."""
    from townlet.dto.convert import to_dict
    from townlet.policy.training.resume import LogSettings

    if args.checkpoint_every is not None and world_size > 1:
        raise UsageError("--checkpoint-every with --env is not supported under torchrun yet")
    settings = {
        "ppo": to_dict(cfg),
        "seed": seed,
        "env": args.env,
        "updates": updates,
        **{
            name: getattr(args, name)
            for name in ("total_steps", "num_envs", "rollout_steps", "hidden", "activation")
        },
        "critic": args.critic,
        "device": args.device,
        "threads": args.threads or 1,
    }
    return plan_run(
        args,
        kind="ppo_online",
        total=updates,
        settings=settings,
        inputs=(args.config, init),
        log=LogSettings(
            path=log, log_frequency=args.log_frequency, max_entries=args.log_max_entries
        ),
        device=args.device,
        result_name=SUMMARY_NAME,
    )
