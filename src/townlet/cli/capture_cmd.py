"""``townlet-train capture``: capture a rollout into a Townlet capture directory and print a
JSON summary (frames, event counters, mean return, output directory)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from townlet.cli import UsageError
from townlet.cli._common import print_json
from townlet.cli._train_common import check_seed
from townlet.config import Config, load_config
from townlet.distributed import LOCAL, Collective, rank_seed
from townlet.policy.policy_argument import resolve_policy_argument
from townlet.policy.replay.deflate import check_choice
from townlet.policy.rollout import RolloutBuffer, capture_rollout, rollout_summary
from townlet.policy.rollout.capture import Recorded
from townlet.policy.rollout.save import (
    DEFAULT_COMPRESS_LEVEL,
    capture_target,
    check_prefix,
    check_workers,
    resolve_level,
)
from townlet.policy.rollout.stream_encoder import SampleEncoder
from townlet.policy.training.services.rollout import rollout_world_config
from townlet.world.config import WORLD_SOCIAL_STAGES

_GYM_PREFIX = "gymnasium:"
DEFAULT_GYM_ENVS = 8


def register(subparsers: Any) -> None:
    """Add the ``capture`` subcommand."""
    parser = subparsers.add_parser(
        "capture",
        help="capture a rollout (town, Gymnasium) into a replay capture directory",
        description=(
            "Run a policy in the embedded town (all agents) or in K copies of a Gymnasium "
            "environment, record decision-time frames and write npz + json samples, "
            "rollout_sample_manifest.json and rollout_sample_metrics.json to --out."
        ),
    )
    parser.add_argument("--config", type=Path, help="config file (TOML/YAML): world, seed, ticks")
    parser.add_argument(
        "--env",
        default="town",
        help="'town' (default) or 'gymnasium:<id>', e.g. gymnasium:CartPole-v1",
    )
    parser.add_argument(
        "--agents", type=int, help="town agents (config default) or Gymnasium copies (8)"
    )
    parser.add_argument("--ticks", type=int, help="ticks to capture (config rollout_ticks: 100)")
    parser.add_argument(
        "--policy",
        default=None,
        help="scripted (town only), random, or a checkpoint file "
        "(default: scripted in the town, random in Gymnasium)",
    )
    parser.add_argument(
        "--social-stage", choices=WORLD_SOCIAL_STAGES, help="the town's social reward stage"
    )
    parser.add_argument("--seed", type=int, help="run seed (config seed: 0)")
    parser.add_argument("--out", type=Path, required=True, help="capture directory to write")
    parser.add_argument("--prefix", default="rollout_sample", help="file prefix (rollout_sample)")
    parser.add_argument("--no-compress", action="store_true", help="store npz members uncompressed")
    parser.add_argument(
        "--compress-level",
        type=int,
        help=f"deflate level of the npz members, 0-9 (default {DEFAULT_COMPRESS_LEVEL})",
    )
    parser.add_argument(
        "--writers",
        type=int,
        help="threads writing the samples (default: one per core, at least 2, for captures of "
        "256 or more town agents, none for smaller ones; 0: no threads)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_capture)


def _source(args: argparse.Namespace, config: Config) -> Any:
    if args.policy is None:
        args.policy = "scripted" if args.env == "town" else "random"
    if args.env == "town":
        return rollout_world_config(config, social_stage=args.social_stage, num_agents=args.agents)
    if not args.env.startswith(_GYM_PREFIX) or args.env == _GYM_PREFIX:
        raise UsageError(f"--env must be 'town' or 'gymnasium:<id>', got {args.env!r}")
    if args.social_stage is not None:
        raise UsageError("--social-stage applies to --env town only")
    if args.policy == "scripted":
        raise UsageError("--policy scripted needs --env town; use random or a checkpoint")
    from townlet.envs.gymnasium_adapter import make_gymnasium_source

    try:
        return make_gymnasium_source(
            args.env[len(_GYM_PREFIX) :],
            DEFAULT_GYM_ENVS if args.agents is None else args.agents,
        )
    except ImportError as exc:
        raise UsageError(str(exc)) from exc


def _capture(
    args: argparse.Namespace,
    source: Any,
    ticks: int,
    seed: int,
    *,
    root: bool = True,
    on_recorded: Recorded | None = None,
) -> RolloutBuffer:
    quiet = args.quiet or not sys.stderr.isatty() or not root
    with tqdm(total=ticks, desc="capture", unit="tick", file=sys.stderr, disable=quiet) as bar:
        policy = resolve_policy_argument(args.policy)
        return capture_rollout(
            source, policy, ticks, seed, progress=bar.update, on_recorded=on_recorded
        )


def run_capture(args: argparse.Namespace) -> int:
    """Capture, save, print the summary; exit 0. Under torchrun every rank captures its own
    source (seeded by its rank) into the one ``--out`` directory; rank 0 prints the summary."""
    group: Collective = getattr(args, "collective", LOCAL)
    config = load_config(args.config) if args.config is not None else Config()
    ticks = config.training.rollout_ticks if args.ticks is None else args.ticks
    check_seed(args.seed)
    seed = config.seed if args.seed is None else args.seed
    if args.no_compress and args.compress_level is not None:
        raise UsageError("--compress-level and --no-compress exclude each other")
    # Refuse bad save settings before capturing, not after.
    level = resolve_level(not args.no_compress, args.compress_level)
    check_prefix(args.prefix)
    try:
        deflate = check_choice()  # $TOWNLET_DEFLATE
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    workers = None if args.writers is None else check_workers(args.writers)
    source = _source(args, config)
    if group.backend is not None:
        return _run_sharded(args, source, ticks, seed, group)
    # The lock is taken before capturing, so a second capture into --out fails at once; the
    # encoder writes the npz members while the source steps (issue #16).
    encoder = SampleEncoder(
        level=level, workers=workers, out=args.out, prefix=args.prefix, deflate=deflate
    )
    with capture_target(args.out), encoder:
        try:
            buffer = _capture(args, source, ticks, seed, on_recorded=encoder.on_recorded)
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()
        out = encoder.save(buffer)
    print_json({**rollout_summary(buffer), "out": str(out), "samples": len(buffer.samples)})
    return 0


def _run_sharded(
    args: argparse.Namespace, source: Any, ticks: int, seed: int, group: Collective
) -> int:
    """Under torchrun: every rank captures its own source (its rank seed) into the one
    ``--out`` directory (``townlet.distributed.capture``); rank 0 prints the global summary."""
    from townlet.distributed.capture import (
        save_sharded_rollout,
        sharded_capture_target,
        sharded_summary,
    )

    # Rank 0 takes the --out lock before any rank captures, as the one-process path does.
    with sharded_capture_target(args.out, group):
        try:
            rank = rank_seed(seed, group.rank)
            buffer = _capture(args, source, ticks, rank, root=group.is_root)
        finally:
            close = getattr(source, "close", None)
            if callable(close):
                close()
        out = save_sharded_rollout(
            buffer,
            args.out,
            group,
            prefix=args.prefix,
            compress=not args.no_compress,
            compress_level=args.compress_level,
        )
    summary = sharded_summary(buffer, group, seed=seed)
    if group.is_root:
        print_json({**summary, "out": str(out), "samples": summary["agents"]})
    return 0
