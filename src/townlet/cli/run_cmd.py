"""``townlet-train run CONFIG --mode replay|rollout|mixed|bc|anneal``: the reference's
``scripts/run_training.py``, as a thin adapter over
:class:`townlet.compat.PolicyTrainingOrchestrator`.

Same flags and control flow (spec reference-dtos_orchestrator_cli §8): ``--mode`` defaults to
``training.source``; ``replay`` summarises or (with ``--train-ppo``) trains on a sample,
manifest or capture directory; ``rollout`` captures ``--rollout-ticks`` ticks of the configured
town and trains on them; ``mixed`` trains on the replay data, then on a fresh rollout, into one
log; ``bc`` and ``anneal`` print their results as JSON. ``CONFIG`` may be the reference's own
YAML (:func:`~townlet.compat.config.load_reference_config` keeps its training keys);
``--ppo-*`` flags override ``ppo`` config keys. Differences: exit status 2 (not 1) for bad
usage or input, as every townlet command; a PPO run prints ``PPO epoch N: {...}`` lines with
the telemetry record. New scripts should use ``townlet-train ppo|bc|anneal|capture``
(docs/migration.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import attrs

from townlet.cli import UsageError
from townlet.cli._common import print_json
from townlet.cli._train_common import without_nulls
from townlet.compat.config import load_reference_config
from townlet.config import Config
from townlet.dto.policy import PPOTrainingResult
from townlet.policy.replay import InMemoryReplayDataset, ReplayDatasetConfig
from townlet.policy.rollout import build_rollout_dataset

MODES = ("replay", "rollout", "mixed", "bc", "anneal")
_PPO_FLOATS = (
    "learning_rate",
    "clip_param",
    "value_loss_coef",
    "entropy_coef",
    "gae_lambda",
    "gamma",
    "max_grad_norm",
    "value_clip",
)
_PPO_INTS = ("num_epochs", "mini_batch_size", "num_mini_batches")


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="the reference's run_training.py (--mode replay|rollout|mixed|bc|anneal)",
        description="Thin adapter with the flags of the reference's scripts/run_training.py.",
    )
    parser.add_argument("config", type=Path, help="config file (TOML/YAML)")
    parser.add_argument("--mode", choices=MODES, help="training mode (training.source)")
    for flag in ("--replay-sample", "--replay-meta", "--replay-manifest", "--capture-dir"):
        parser.add_argument(flag, type=Path)
    parser.add_argument("--replay-batch-size", type=int, default=1)
    for flag in ("--replay-shuffle", "--replay-drop-last", "--replay-streaming"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--replay-seed", type=int)
    parser.add_argument("--bc-manifest", type=Path)
    parser.add_argument("--anneal-log-dir", type=Path)
    parser.add_argument("--anneal-exit-on-failure", action="store_true")
    parser.add_argument("--train-ppo", action="store_true")
    parser.add_argument("--rollout-save-dir", type=Path)
    parser.add_argument("--rollout-auto-seed-agents", action="store_true")
    parser.add_argument("--rollout-ticks", type=int)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--ppo-log", type=Path)
    parser.add_argument("--ppo-log-frequency", type=int, default=1)
    parser.add_argument("--ppo-log-max-entries", type=int)
    parser.add_argument("--device")
    for name in _PPO_FLOATS:
        parser.add_argument(f"--ppo-{name.replace('_', '-')}", type=float, dest=f"ppo_{name}")
    for name in _PPO_INTS:
        parser.add_argument(f"--ppo-{name.replace('_', '-')}", type=int, dest=f"ppo_{name}")
    normalize = parser.add_mutually_exclusive_group()
    normalize.add_argument(
        "--ppo-normalize-advantages", action="store_true", default=None, dest="ppo_normalize"
    )
    normalize.add_argument(
        "--ppo-no-normalize-advantages", action="store_false", dest="ppo_normalize"
    )
    parser.set_defaults(handler=run_training_cmd)


def ppo_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--ppo-*`` values given, keyed by ``PPOConfig`` field (reference
    ``_collect_ppo_overrides``)."""
    out = {n: getattr(args, f"ppo_{n}") for n in (*_PPO_FLOATS, *_PPO_INTS)}
    out["advantage_normalization"] = args.ppo_normalize
    return {k: v for k, v in out.items() if v is not None}


def _config(args: argparse.Namespace) -> Config:
    config = load_reference_config(args.config)
    overrides = ppo_overrides(args)
    return attrs.evolve(config, ppo=attrs.evolve(config.ppo, **overrides)) if overrides else config


def _replay_config(args: argparse.Namespace, manifest: Path | None) -> ReplayDatasetConfig | None:
    """The replay dataset of the flags (reference ``_build_dataset_config_from_args``):
    ``--capture-dir``, else ``manifest``, else ``--replay-sample``; None when none is given."""
    common: dict[str, Any] = {
        "batch_size": args.replay_batch_size,
        "shuffle": args.replay_shuffle,
        "seed": args.replay_seed or 0,
        "drop_last": args.replay_drop_last,
        "streaming": args.replay_streaming,
    }
    if args.capture_dir is not None:
        return ReplayDatasetConfig.from_capture_dir(args.capture_dir, **common)
    if manifest is not None:
        return ReplayDatasetConfig.from_manifest(manifest, **common)
    if args.replay_sample is not None:
        return ReplayDatasetConfig(entries=[(args.replay_sample, args.replay_meta)], **common)
    return None


def _mode(args: argparse.Namespace, config: Config) -> str:
    if args.capture_dir is not None and args.replay_manifest is not None:
        raise UsageError("Specify either --capture-dir or --replay-manifest, not both")
    mode = (args.mode or config.training.source).lower()
    ticks = args.rollout_ticks
    if args.mode is None and mode == "replay" and ticks is not None and ticks > 0:
        return "rollout"  # the reference's auto-switch
    return mode


def run_training_cmd(args: argparse.Namespace) -> int:
    """Handler of ``townlet-train run``."""
    from townlet.compat import PolicyTrainingOrchestrator

    config = _config(args)
    orchestrator = PolicyTrainingOrchestrator(config)
    mode = _mode(args, config)
    if mode == "bc":
        print_json(orchestrator.run_bc_training(manifest=args.bc_manifest).model_dump())
        return 0
    if mode == "anneal":
        return _anneal(args, orchestrator)
    rollout = _rollout_dataset(args, orchestrator, mode) if mode in ("rollout", "mixed") else None
    manifest = args.replay_manifest or config.training.replay_manifest
    replay = _replay_config(args, manifest if mode in ("replay", "mixed") else None)
    if args.train_ppo or mode in ("rollout", "mixed"):
        _train(args, orchestrator, mode, replay, rollout)
    elif args.replay_manifest is not None or args.capture_dir is not None:
        orchestrator.run_replay_dataset(replay)  # type: ignore[arg-type]
    elif args.replay_sample is not None:
        orchestrator.run_replay(args.replay_sample, args.replay_meta)
    else:
        try:
            orchestrator.run()
        except NotImplementedError as exc:
            raise UsageError(str(exc)) from None
    return 0


def _anneal(args: argparse.Namespace, orchestrator: Any) -> int:
    dataset = _replay_config(args, args.replay_manifest)
    summary = orchestrator.run_anneal(
        dataset_config=dataset, log_dir=args.anneal_log_dir, bc_manifest=args.bc_manifest
    )
    from townlet.policy.training.services.promotion_io import promotion_state_to_dict

    payload = {
        "status": summary.status,
        "promotion": promotion_state_to_dict(orchestrator.promotion),
        "results": [stage.model_dump() for stage in summary.stages],
    }
    print(json.dumps(payload, indent=2))
    return 1 if args.anneal_exit_on_failure and summary.status != "PASS" else 0


def _rollout_dataset(
    args: argparse.Namespace, orchestrator: Any, mode: str
) -> InMemoryReplayDataset:
    if args.capture_dir is not None:
        raise UsageError("Rollout modes expect live capture; remove --capture-dir")
    training = orchestrator.config.training
    if mode == "rollout" and (args.replay_manifest or training.replay_manifest):
        raise UsageError("Rollout mode does not use replay manifests")
    ticks = args.rollout_ticks if args.rollout_ticks is not None else training.rollout_ticks
    if ticks <= 0:
        raise UsageError("rollout_ticks must be positive for rollout/mixed modes")
    buffer = orchestrator.capture_rollout(ticks, output_dir=args.rollout_save_dir)
    dataset: InMemoryReplayDataset = build_rollout_dataset(
        buffer, batch_size=args.replay_batch_size, drop_last=args.replay_drop_last
    )
    return dataset


def _train(
    args: argparse.Namespace,
    orchestrator: Any,
    mode: str,
    replay: ReplayDatasetConfig | None,
    rollout: InMemoryReplayDataset | None,
) -> None:
    sources = (
        "--capture-dir, --replay-manifest, --replay-sample, or config.training.replay_manifest"
    )
    if mode in ("replay", "mixed") and replay is None:
        raise UsageError(f"{mode.capitalize()} mode requires replay dataset via {sources}")
    options: dict[str, Any] = {
        "epochs": args.epochs,
        "log_path": args.ppo_log,
        "log_frequency": args.ppo_log_frequency,
        "max_log_entries": args.ppo_log_max_entries,
        "device_str": args.device,
        "progress": _print_epoch,
    }
    if mode in ("replay", "mixed"):
        orchestrator.run_ppo(dataset_config=replay, **options)
    if rollout is not None:
        orchestrator.run_ppo(in_memory_dataset=rollout, **options)


def _print_epoch(epoch: int, record: PPOTrainingResult) -> None:
    print(f"PPO epoch {epoch}: {json.dumps(without_nulls(record.to_dict()))}", flush=True)
