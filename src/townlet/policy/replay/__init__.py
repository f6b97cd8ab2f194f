"""Townlet-compatible replay data, torch-free: samples, npz/json files, manifests, batches,
datasets, metrics and BC frames (``docs/replay.md``)."""

from __future__ import annotations

from townlet.policy.replay.batch import (
    ReplayBatch,
    batch_conflict_stats,
    build_batch,
    summarize_batch,
)
from townlet.policy.replay.bc import BCFrames, flatten_bc_frames, load_bc_samples
from townlet.policy.replay.buckets import (
    count_batches,
    epoch_generator,
    group_by_signature,
    plan_batches,
)
from townlet.policy.replay.bulk import samples_from_block
from townlet.policy.replay.dataset import (
    InMemoryReplayDataset,
    ReplayDataset,
    ReplayDatasetConfig,
)
from townlet.policy.replay.io import (
    SampleHeader,
    default_meta_path,
    load_replay_sample,
    read_sample_header,
    read_sidecar,
    save_replay_sample,
    sidecar_json,
    sidecar_texts,
)
from townlet.policy.replay.manifest import (
    CAPTURE_MANIFEST_NAME,
    CAPTURE_METRICS_NAME,
    ManifestEntry,
    read_capture_metrics,
    read_manifest,
    resolve_manifest_path,
)
from townlet.policy.replay.metrics import (
    ReplayEventCounts,
    aggregate_metrics,
    compute_sample_metrics,
    record_event,
    record_events,
)
from townlet.policy.replay.sample import (
    NPZ_KEYS,
    REQUIRED_CONFLICT_FEATURES,
    STEP_ARRAY_FIELDS,
    TRAINING_ARRAY_FIELDS,
    ReplaySample,
    sample_conflict_stats,
    sample_signature,
)

__all__ = [
    "CAPTURE_MANIFEST_NAME",
    "CAPTURE_METRICS_NAME",
    "NPZ_KEYS",
    "REQUIRED_CONFLICT_FEATURES",
    "STEP_ARRAY_FIELDS",
    "TRAINING_ARRAY_FIELDS",
    "BCFrames",
    "InMemoryReplayDataset",
    "ManifestEntry",
    "ReplayBatch",
    "ReplayDataset",
    "ReplayDatasetConfig",
    "ReplayEventCounts",
    "ReplaySample",
    "SampleHeader",
    "aggregate_metrics",
    "batch_conflict_stats",
    "build_batch",
    "compute_sample_metrics",
    "count_batches",
    "default_meta_path",
    "epoch_generator",
    "flatten_bc_frames",
    "group_by_signature",
    "load_bc_samples",
    "load_replay_sample",
    "plan_batches",
    "read_capture_metrics",
    "read_manifest",
    "read_sample_header",
    "read_sidecar",
    "record_event",
    "record_events",
    "resolve_manifest_path",
    "sample_conflict_stats",
    "sample_signature",
    "samples_from_block",
    "save_replay_sample",
    "sidecar_json",
    "sidecar_texts",
    "summarize_batch",
]
