"""``townlet-train anneal``: run the config's anneal schedule; print ``{status, promotion,
results}`` as JSON (the reference's ``run_training.py --mode anneal`` output).

PPO stages train on a replay manifest, a capture directory, or fresh rollouts of the configured
town (``--rollout-ticks N``: captured each stage with the current parameters); without any of
them, on ``training.replay_manifest``. ``--out DIR`` keeps telemetry, checkpoints,
``anneal_results.json`` and ``promotion.json`` there, and resumes an interrupted run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from townlet.cli import UsageError
from townlet.cli._common import check_out_dir, print_json
from townlet.cli._launch import collective
from townlet.cli._train_common import check_seed, set_threads
from townlet.config import Config, load_config
from townlet.policy.replay import ReplayDataset, ReplayDatasetConfig, load_bc_samples


def register(subparsers: Any) -> None:
    """Add the ``anneal`` subcommand."""
    parser = subparsers.add_parser(
        "anneal",
        help="run the anneal schedule (BC gate, then PPO stages with guardrails)",
        description=(
            "Run training.anneal_schedule from --config: BC stages gate on the accuracy "
            "threshold, PPO stages continue from the current weights with bc_weight as the BC "
            "coefficient; print {status, promotion, results} as JSON."
        ),
    )
    parser.add_argument("--config", type=Path, required=True, help="config file (TOML/YAML)")
    parser.add_argument("--bc-manifest", type=Path, help="BC demonstrations (training.bc.manifest)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--manifest", type=Path, help="replay manifest for the PPO stages")
    source.add_argument("--capture-dir", type=Path, help="capture directory for the PPO stages")
    source.add_argument(
        "--rollout-ticks", type=int, help="PPO stages train on fresh rollouts of N ticks"
    )
    parser.add_argument(
        "--root", type=Path, help="resolve manifest paths (BC and replay) against this too"
    )
    parser.add_argument("--batch-size", type=int, default=1, help="samples per PPO batch (1)")
    parser.add_argument("--out", type=Path, help="run directory (files, resume, promotion.json)")
    parser.add_argument(
        "--exit-on-failure", action="store_true", help="exit 1 when the status is not PASS"
    )
    parser.add_argument("--seed", type=int, help="run seed (config seed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1)")
    parser.set_defaults(handler=run_anneal_cmd)


def _ppo_sources(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    from townlet.policy.training.strategies.anneal.data import RolloutPlan

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.manifest is not None:
        replay = ReplayDatasetConfig.from_manifest(
            args.manifest, batch_size=args.batch_size, root=args.root
        )
        return {"ppo_data": ReplayDataset(replay)}
    if args.capture_dir is not None:
        replay = ReplayDatasetConfig.from_capture_dir(args.capture_dir, batch_size=args.batch_size)
        return {"ppo_data": ReplayDataset(replay)}
    if args.rollout_ticks is not None:
        if args.rollout_ticks < 1:
            raise UsageError(f"--rollout-ticks must be >= 1, got {args.rollout_ticks}")
        plan = RolloutPlan(world=config.world, ticks=args.rollout_ticks, batch_size=args.batch_size)
        return {"rollout": plan}
    return {}


def run_anneal_cmd(args: argparse.Namespace) -> int:
    """Handler of ``townlet-train anneal``: run, print, and exit 1 on a non-PASS status when
    ``--exit-on-failure`` is given."""
    from townlet.policy.training.strategies.anneal.run import anneal_payload, run_anneal_with_state

    check_seed(args.seed)
    check_out_dir(args.out)
    group = collective(args)
    config = load_config(args.config)
    sources = _ppo_sources(args, config)
    set_threads(args.threads)
    bc_data: Any = args.bc_manifest
    if bc_data is not None and args.root is not None:
        bc_data = load_bc_samples(bc_data, root=args.root)
    run = run_anneal_with_state(
        config,
        bc_data=bc_data,
        seed=args.seed,
        out_dir=args.out,
        quiet=args.quiet,
        group=group,
        **sources,
    )
    if not group.is_root:
        return 0
    print_json(anneal_payload(run.summary, run.promotion))
    return 1 if args.exit_on_failure and run.summary.status != "PASS" else 0
