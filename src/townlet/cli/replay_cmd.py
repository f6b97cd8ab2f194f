"""``townlet-train replay``: load replay data, validate it and print a JSON summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from townlet.cli import UsageError
from townlet.cli._common import print_json
from townlet.cli._train_common import check_seed
from townlet.errors import ReplayDataError
from townlet.policy.replay import (
    InMemoryReplayDataset,
    ReplayDataset,
    ReplayDatasetConfig,
    batch_conflict_stats,
    compute_sample_metrics,
    load_replay_sample,
)

_Dataset = ReplayDataset | InMemoryReplayDataset


def register(subparsers: Any) -> None:
    """Add the ``replay`` subcommand."""
    parser = subparsers.add_parser(
        "replay",
        help="validate replay samples, a manifest or a capture directory; print a summary",
        description=(
            "Load Townlet replay data (npz + json sidecar), validate every sample, batch it "
            "by shape and print a JSON summary: samples, batches, shapes, conflict stats and "
            "aggregated metrics."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path, help="replay or BC manifest (JSON or YAML)")
    source.add_argument("--capture-dir", type=Path, help="directory with rollout_sample_*.json")
    source.add_argument("--sample", type=Path, help="one sample .npz")
    parser.add_argument("--meta", type=Path, help="sidecar of --sample (default: sibling .json)")
    parser.add_argument(
        "--root", type=Path, help="resolve manifest paths against this directory too"
    )
    parser.add_argument("--batch-size", type=int, default=1, help="samples per batch (1)")
    parser.add_argument("--shuffle", action="store_true", help="shuffle within shape buckets")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (0)")
    parser.add_argument("--drop-last", action="store_true", help="drop short final batches")
    parser.add_argument("--streaming", action="store_true", help="load samples per batch")
    parser.add_argument(
        "--no-conflict-features",
        action="store_true",
        help="accept samples without rivalry_max/rivalry_avoid_count (Gymnasium captures)",
    )
    parser.set_defaults(handler=run_replay)


def _dataset(args: argparse.Namespace) -> tuple[_Dataset, dict[str, Any]]:
    if args.meta is not None and args.sample is None:
        raise UsageError("--meta needs --sample")
    if args.root is not None and args.manifest is None:
        raise UsageError("--root applies to --manifest only")
    kwargs: dict[str, Any] = {
        "batch_size": args.batch_size,
        "shuffle": args.shuffle,
        "seed": args.seed,
        "drop_last": args.drop_last,
        "streaming": args.streaming,
        "require_conflict_features": not args.no_conflict_features,
    }
    if args.sample is not None:
        sample = load_replay_sample(
            args.sample, args.meta, require_conflict_features=not args.no_conflict_features
        )
        dataset = InMemoryReplayDataset(
            [sample], batch_size=args.batch_size, drop_last=args.drop_last, label=args.sample.stem
        )
        return dataset, {"sample": str(args.sample), "metrics": compute_sample_metrics(sample)}
    if args.manifest is not None:
        config = ReplayDatasetConfig.from_manifest(args.manifest, root=args.root, **kwargs)
        return ReplayDataset(config), {"manifest": str(args.manifest)}
    config = ReplayDatasetConfig.from_capture_dir(args.capture_dir, **kwargs)
    return ReplayDataset(config), {"capture_dir": str(args.capture_dir)}


def _buckets(dataset: _Dataset) -> list[dict[str, Any]]:
    return [
        {
            "samples": len(bucket),
            "timesteps": signature[0][0],
            "map_shape": list(signature[0][1:]),
            "feature_dim": signature[1][1],
            "value_pred_steps": signature[2][4][0],
        }
        for bucket, signature in zip(dataset.buckets, dataset.bucket_signatures, strict=True)
    ]


def summarize_dataset(dataset: _Dataset) -> dict[str, Any]:
    """Walk epoch 0 and summarise: counts, bucket shapes, the action dimension, conflict stats
    averaged over batches (``<k>_avg``, as PPO logs them) and the baseline metrics.
    Raises :class:`ReplayDataError` when the dataset yields no batches."""
    totals: dict[str, float] = {}
    batches = 0
    action_dim = 0
    for batch in dataset.batches(0):
        batches += 1
        action_dim = max(action_dim, int(batch.metadata["action_dim"]))
        for key, value in batch_conflict_stats(batch).items():
            totals[key] = totals.get(key, 0.0) + value
    if batches == 0:
        raise ReplayDataError(
            f"Replay dataset yielded no batches (batch size {dataset.batch_size} with "
            "--drop-last exceeds every shape bucket)"
        )
    return {
        "label": dataset.label,
        "data_mode": dataset.data_mode,
        "samples": dataset.num_samples,
        "batches": batches,
        "batch_size": dataset.batch_size,
        "buckets": _buckets(dataset),
        "action_dim": action_dim,
        "conflict_stats": {f"{k}_avg": v / batches for k, v in totals.items()},
        "baseline_metrics": dataset.baseline_metrics,
    }


def run_replay(args: argparse.Namespace) -> int:
    """Handler of ``townlet-train replay``: print the summary, return 0.

    Raises ``UsageError`` for a non-positive ``--batch-size`` or a negative ``--seed``, and
    ``ReplayDataError`` for bad data (both exit 2).
    """
    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    check_seed(args.seed)
    dataset, source = _dataset(args)
    print_json({"source": source, **summarize_dataset(dataset)})
    return 0
