"""``townlet-train bc``: behaviour cloning from a BC manifest; prints the result as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import attrs

from townlet.cli import UsageError
from townlet.cli._common import check_out_dir, print_json
from townlet.cli._launch import collective
from townlet.cli._resumable import RunPlan, add_checkpoint_option, plan_run
from townlet.cli._train_common import (
    add_device_options,
    add_run_options,
    check_seed,
    one_line_warnings,
    progress_bar,
    set_threads,
    without_nulls,
    write_result,
)
from townlet.config import BCConfig, load_config

CHECKPOINT_NAME = "checkpoint.pt"


def register(subparsers: Any) -> None:
    """Add the ``bc`` subcommand."""
    parser = subparsers.add_parser(
        "bc",
        help="behaviour cloning from demonstrations (a BC manifest)",
        description=(
            "Train the policy network by behaviour cloning on a BC manifest's demonstrations, "
            "hold out a seeded validation split, print the result record as JSON and, with "
            "--out DIR, save DIR/checkpoint.pt (initialises `townlet-train ppo --init`)."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path, help="BC manifest (JSON list of samples)")
    source.add_argument(
        "--config", type=Path, help="config file: training.bc (manifest and hyperparameters)"
    )
    parser.add_argument("--root", type=Path, help="resolve manifest paths against this too")
    parser.add_argument("--epochs", type=int, help="passes over the training frames (10)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (1e-3)")
    parser.add_argument("--batch-size", type=int, help="frames per minibatch (64)")
    parser.add_argument("--weight-decay", type=float, help="Adam L2 weight decay (0)")
    parser.add_argument("--val-fraction", type=float, help="held-out share of frames (0.1)")
    add_device_options(parser, compile_dest="compile")
    add_run_options(parser)
    add_checkpoint_option(parser, "epochs")
    parser.set_defaults(handler=run_bc)


def _bc_config(args: argparse.Namespace) -> tuple[BCConfig, int]:
    cfg, seed = BCConfig(), 0
    if args.config is not None:
        loaded = load_config(args.config)
        cfg, seed = loaded.training.bc, loaded.seed
        if cfg.manifest is None:
            raise UsageError(f"{args.config}: training.bc.manifest is not set")
    overrides = {
        "epochs": args.epochs,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "weight_decay": args.weight_decay,
        "val_fraction": args.val_fraction,
        "device": args.device,
        "compile": args.compile,
    }
    # evolve re-runs the validators, so out-of-range values fail with the field's name.
    cfg = attrs.evolve(cfg, **{k: v for k, v in overrides.items() if v is not None})
    return cfg, seed if args.seed is None else args.seed


def _plan(args: argparse.Namespace, cfg: BCConfig, seed: int, *, writer: bool = True) -> RunPlan:
    from townlet.dto.convert import to_dict
    from townlet.policy.training.resume import LogSettings

    return plan_run(
        args,
        kind="bc",
        total=cfg.epochs,
        settings={"bc": to_dict(cfg), "seed": seed},
        inputs=(args.manifest, args.config, cfg.manifest),
        log=LogSettings(),
        device=cfg.device,
        writer=writer,
    )


def run_bc(args: argparse.Namespace) -> int:
    """Handler of ``townlet-train bc``: train, print the result, save the checkpoint."""
    with one_line_warnings("bc"):
        return _run_bc(args)


def _run_bc(args: argparse.Namespace) -> int:
    from townlet.policy.training.strategies.bc.train import save_bc_checkpoint, train_bc

    check_seed(args.seed)
    check_out_dir(args.out)
    cfg, seed = _bc_config(args)
    set_threads(args.threads)
    group = collective(args)
    plan = _plan(args, cfg, seed, writer=group.is_root)
    with progress_bar(cfg.epochs, quiet=args.quiet or not group.is_root, desc="bc") as bar:

        def progress(epoch: int, stats: Any) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss:.4f}", acc=f"{stats.accuracy:.3f}")

        run = train_bc(
            args.manifest,
            cfg=cfg,
            seed=seed,
            root=args.root,
            progress=progress,
            group=group,
            sinks=plan.sinks,
            start=None if plan.start is None else (plan.start.done, plan.start.state),
        )
    if not group.is_root:
        return 0
    payload = without_nulls(run.result.to_dict())
    if args.out is not None:
        save_bc_checkpoint(args.out / CHECKPOINT_NAME, run)
        write_result(args.out, payload)
        plan.finish()
    print_json(payload)
    return 0
