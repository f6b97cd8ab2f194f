"""``townlet-train evaluate``: the episode returns of a checkpointed policy, as JSON.

Runs :func:`~townlet.policy.evaluate.evaluate_policy` on seeded episodes and prints its summary:
the ``mode``, mean, std and the per-episode returns, lengths and reset seeds. Actions are sampled
(``--mode sampled``, the default, as in training); ``--mode argmax`` takes the most likely
action; ``--mode both`` prints ``{"sampled": ..., "argmax": ...}`` on the same seeds.
``--sample`` (the old opt-in to sampling) is still accepted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from townlet.cli import UsageError
from townlet.cli._common import print_json
from townlet.cli._train_common import check_seed, set_threads


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="episode returns of a checkpointed policy in the town or a Gymnasium environment",
        description=(
            "Evaluate a checkpoint (from bc or ppo --out) on seeded episodes and print the mean "
            "and std of the episode return with the per-episode values as JSON."
        ),
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file")
    parser.add_argument("--env", required=True, help="'town' or gymnasium:<id>")
    parser.add_argument("--episodes", type=int, default=10, help="episodes (10)")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed (0)")
    parser.add_argument(
        "--mode",
        choices=("sampled", "argmax", "both"),
        default=None,
        help="sampled actions (default, as in training), argmax, or both side by side",
    )
    parser.add_argument(
        "--sample", action="store_true", help="the same as --mode sampled (kept for old scripts)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (1)")
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``townlet-train evaluate``."""
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    check_seed(args.seed)
    set_threads(args.threads)
    if args.sample and args.mode not in (None, "sampled"):
        raise UsageError(f"--sample contradicts --mode {args.mode}")
    mode = args.mode or "sampled"
    from townlet.policy.evaluate import evaluate_modes, evaluate_policy
    from townlet.policy.rollout_torch import load_network_policy

    policy = load_network_policy(args.checkpoint)
    checkpoint = {"checkpoint": str(args.checkpoint)}
    if mode == "both":
        runs = evaluate_modes(policy, args.env, episodes=args.episodes, seed=args.seed)
        print_json({**checkpoint, "mode": "both", **{k: v.to_dict() for k, v in runs.items()}})
        return 0
    evaluation = evaluate_policy(
        policy, args.env, episodes=args.episodes, seed=args.seed, deterministic=mode == "argmax"
    )
    print_json({**checkpoint, **evaluation.to_dict()})
    return 0
