"""``townlet-train ppo``: PPO on replay data (prints the last epoch's record as JSON) or online
on a Gymnasium environment with ``--env gymnasium:<id>`` (prints a summary; see
:mod:`townlet.cli._ppo_online`).

Every :class:`~townlet.config.PPOConfig` field has a ``--ppo-<field>`` option (underscores as
dashes; ``compile`` is ``--compile``); the overrides are applied to the config record with its
validators, so bounds hold.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import attrs

from townlet.cli import UsageError
from townlet.cli._common import check_out_dir, print_json
from townlet.cli._launch import collective
from townlet.cli._ppo_online import add_online_options, run_online
from townlet.cli._resumable import RunPlan, add_checkpoint_option, plan_run
from townlet.cli._train_common import (
    add_device_options,
    add_run_options,
    check_device,
    check_seed,
    one_line_warnings,
    progress_bar,
    set_threads,
    without_nulls,
    write_result,
)
from townlet.config import Config, PPOConfig, load_config
from townlet.dto.policy import PPOTrainingResult
from townlet.policy.replay import (
    InMemoryReplayDataset,
    ReplayDataset,
    ReplayDatasetConfig,
    load_replay_sample,
)

CHECKPOINT_NAME = "checkpoint.pt"


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# PPOConfig fields set by an option of their own (see add_device_options), not --ppo-<field>.
_OWN_OPTIONS = ("compile",)


def _add_ppo_overrides(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("PPO hyperparameters (override --config)")
    defaults = PPOConfig()
    for field in attrs.fields(PPOConfig):
        if field.name in _OWN_OPTIONS:
            continue
        default = getattr(defaults, field.name)
        kind: Any = _parse_bool if isinstance(default, bool) else type(default)
        group.add_argument(
            f"--ppo-{field.name.replace('_', '-')}",
            dest=f"ppo_{field.name}",
            type=kind,
            metavar="BOOL" if isinstance(default, bool) else kind.__name__.upper(),
            help=f"default {default}",
        )


def register(subparsers: Any) -> None:
    """Add the ``ppo`` subcommand."""
    parser = subparsers.add_parser(
        "ppo",
        help="PPO on replay data, or online on a Gymnasium environment (--env)",
        description=(
            "Train PPO on Townlet replay data, write telemetry 1.2 lines with --log, print the "
            "last epoch's record as JSON and, with --out DIR, save DIR/checkpoint.pt (the "
            "whole PPO state: continue with --init, or in Python with load_ppo_state). With "
            "--env gymnasium:<id> it trains online instead and prints a JSON summary with the "
            "deterministic evaluation return; --out DIR then also gets telemetry.jsonl and "
            "summary.json."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--manifest", type=Path, help="replay manifest")
    source.add_argument("--capture-dir", type=Path, help="capture directory (rollout_sample_*)")
    source.add_argument("--sample", type=Path, help="one replay sample .npz")
    source.add_argument("--env", help="train online on gymnasium:<id> (e.g. CartPole-v1)")
    parser.add_argument("--root", type=Path, help="resolve manifest paths against this too")
    parser.add_argument("--config", type=Path, help="config file: ppo section, seed, data")
    parser.add_argument("--epochs", type=int, help="PPO epochs over replay data (1)")
    parser.add_argument("--batch-size", type=int, help="replay samples per batch (1)")
    parser.add_argument(
        "--init",
        type=Path,
        help="checkpoint to start from (BC or PPO); with --env also 'orthogonal' (default) "
        "or 'torch_default' for a fresh network's weight initialisation",
    )
    parser.add_argument(
        "--critic-warmup-epochs",
        type=int,
        default=0,
        help="the first N of the --epochs train only the value head (counted inside --epochs, "
        "unlike anneal's training.critic_warmup_epochs, which come on top of a stage's epochs)",
    )
    parser.add_argument(
        "--log",
        "--telemetry-log",
        dest="log",
        type=Path,
        help="append telemetry 1.2 lines to this file (--telemetry-log under torchrun, which "
        "takes --log for its own --log-dir)",
    )
    parser.add_argument("--log-frequency", type=int, default=1, help="log every Nth epoch (1)")
    parser.add_argument(
        "--log-max-entries", type=int, help="rotate to <log>.1, <log>.2, ... after N lines"
    )
    add_device_options(parser, compile_dest="ppo_compile")
    add_run_options(parser)
    add_checkpoint_option(parser, "epochs (updates with --env)")
    add_online_options(parser)
    _add_ppo_overrides(parser)
    parser.set_defaults(handler=run_ppo)


def _ppo_config(args: argparse.Namespace, base: Config) -> PPOConfig:
    overrides = {
        field.name: getattr(args, f"ppo_{field.name}")
        for field in attrs.fields(PPOConfig)
        if getattr(args, f"ppo_{field.name}") is not None
    }
    return attrs.evolve(base.ppo, **overrides)


def _dataset(args: argparse.Namespace, base: Config) -> tuple[Any, str | None]:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.sample is not None:
        sample = load_replay_sample(args.sample)
        dataset = InMemoryReplayDataset([sample], label=args.sample.stem)
        return dataset, "replay"
    if args.capture_dir is not None:
        config = ReplayDatasetConfig.from_capture_dir(args.capture_dir, batch_size=args.batch_size)
        return ReplayDataset(config), None
    manifest = args.manifest or base.training.replay_manifest
    if manifest is None:
        raise UsageError("give --manifest, --capture-dir or --sample (or training.replay_manifest)")
    config = ReplayDatasetConfig.from_manifest(manifest, batch_size=args.batch_size, root=args.root)
    return ReplayDataset(config), None


def _check_args(args: argparse.Namespace) -> None:
    check_seed(args.seed)
    args.epochs = 1 if args.epochs is None else args.epochs
    args.batch_size = 1 if args.batch_size is None else args.batch_size
    if str(args.init) in ("orthogonal", "torch_default"):
        raise UsageError(f"--init {args.init} applies to --env runs; give a checkpoint file")
    if args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    if args.log_frequency < 1:
        raise UsageError(f"--log-frequency must be >= 1, got {args.log_frequency}")
    if args.critic_warmup_epochs < 0:
        raise UsageError(f"--critic-warmup-epochs must be >= 0, got {args.critic_warmup_epochs}")


def _plan(
    args: argparse.Namespace, base: Config, cfg: PPOConfig, seed: int, *, writer: bool = True
) -> RunPlan:
    from townlet.dto.convert import to_dict
    from townlet.policy.training.resume import LogSettings

    run_settings = {
        "ppo": to_dict(cfg),
        "seed": seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "critic_warmup_epochs": args.critic_warmup_epochs,
        "device": args.device,
    }
    manifest = args.manifest or base.training.replay_manifest
    log = LogSettings(
        path=args.log, log_frequency=args.log_frequency, max_entries=args.log_max_entries
    )
    return plan_run(
        args,
        kind="ppo",
        total=args.epochs,
        settings=run_settings,
        inputs=(manifest, args.capture_dir, args.sample, args.config, args.init),
        log=log,
        device=args.device,
        writer=writer,
    )


def run_ppo(args: argparse.Namespace) -> int:
    """Handler of ``townlet-train ppo``: train, print the last record, save the state."""
    with one_line_warnings("ppo"):
        return _run_ppo(args)


def _run_ppo(args: argparse.Namespace) -> int:
    from townlet.policy.training.strategies.ppo.train import train_ppo

    base = load_config(args.config) if args.config is not None else Config()
    cfg = _ppo_config(args, base)
    args.device = args.device or "cpu"
    seed = base.seed if args.seed is None else args.seed
    check_out_dir(args.out)
    check_device(args.device)
    if args.env is not None:
        check_seed(args.seed)
        set_threads(args.threads)
        summary = run_online(args, cfg, seed)
        if summary is not None:
            print_json(summary)
        return 0
    _check_args(args)
    dataset, data_mode = _dataset(args, base)
    set_threads(args.threads)
    group = collective(args)
    plan = _plan(args, base, cfg, seed, writer=group.is_root)
    with progress_bar(args.epochs, quiet=args.quiet or not group.is_root, desc="ppo") as bar:

        def progress(epoch: int, record: PPOTrainingResult) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{record.loss_total:.4f}", kl=f"{record.kl_divergence:.4f}")

        run = train_ppo(
            dataset,
            cfg=cfg,
            epochs=args.epochs,
            seed=seed,
            init=args.init if plan.start is None else None,
            state=None if plan.start is None else plan.start.state,
            start_epoch=0 if plan.start is None else plan.start.done,
            sinks=plan.sinks,
            log_path=args.log,
            log_frequency=args.log_frequency,
            max_log_entries=args.log_max_entries,
            value_only_epochs=args.critic_warmup_epochs,
            progress=progress,
            device=args.device,
            data_mode=data_mode,
            group=group,
        )
    if not group.is_root:
        return 0
    payload = without_nulls(run.result.to_dict())
    if args.out is not None:
        from townlet.dto.convert import to_dict
        from townlet.policy.training.strategies.ppo.checkpoint import save_ppo_state

        save_ppo_state(args.out / CHECKPOINT_NAME, run.state, extra={"ppo": to_dict(cfg)})
        write_result(args.out, payload)
        plan.finish()
    print_json(payload)
    return 0
