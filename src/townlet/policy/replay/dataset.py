"""Replay datasets: samples from disk (:class:`ReplayDataset`) or memory
(:class:`InMemoryReplayDataset`), bucketed by shape and cut into :class:`ReplayBatch` es.

``batches(epoch)`` is the deterministic path (the order depends only on seed and epoch);
iterating the dataset itself walks epochs 0, 1, 2, … like the reference's persistent generator.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from attrs import validators as v

from townlet.errors import ConfigError, ReplayDataError
from townlet.policy.replay.batch import ReplayBatch, build_batch
from townlet.policy.replay.buckets import (
    BatchPlan,
    Bucket,
    count_batches,
    group_by_signature,
    plan_batches,
)
from townlet.policy.replay.io import SampleHeader, load_replay_sample, read_sample_header
from townlet.policy.replay.manifest import (
    CAPTURE_MANIFEST_NAME,
    CAPTURE_METRICS_NAME,
    ManifestEntry,
    read_capture_metrics,
    read_manifest,
)
from townlet.policy.replay.metrics import ReplayEventCounts, aggregate_metrics
from townlet.policy.replay.sample import ReplaySample, Signature, sample_signature


def _entries(value: Sequence[Any]) -> tuple[ManifestEntry, ...]:
    # Accept ManifestEntry records, (sample, meta) pairs or bare sample paths.
    out = []
    for item in value:
        if isinstance(item, ManifestEntry):
            out.append(item)
        elif isinstance(item, tuple | list):
            sample, meta = item
            out.append(
                ManifestEntry(sample=Path(sample), meta=None if meta is None else Path(meta))
            )
        else:
            out.append(ManifestEntry(sample=Path(item)))
    if not out:
        raise ConfigError("ReplayDatasetConfig.entries must not be empty")
    return tuple(out)


def _positive(_: object, attribute: Any, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{attribute.name} must be positive, got {value}")


def _non_negative(_: object, attribute: Any, value: int) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
class ReplayDatasetConfig:
    """Which samples a :class:`ReplayDataset` reads and how it batches them.

    ``entries`` are :class:`ManifestEntry` records (``(sample, meta)`` pairs or paths are
    converted). ``metrics_map`` maps an npz basename to metrics used when a sidecar has none.
    ``seed`` (>= 0) drives the per-epoch shuffle. ``streaming`` reads only headers up front and
    loads each batch's samples when it is yielded.
    """

    entries: tuple[ManifestEntry, ...] = attrs.field(converter=_entries)
    batch_size: int = attrs.field(default=1, validator=[v.instance_of(int), _positive])
    shuffle: bool = attrs.field(default=False, validator=v.instance_of(bool))
    seed: int = attrs.field(default=0, validator=[v.instance_of(int), _non_negative])
    drop_last: bool = attrs.field(default=False, validator=v.instance_of(bool))
    streaming: bool = attrs.field(default=False, validator=v.instance_of(bool))
    metrics_map: Mapping[str, Mapping[str, float]] | None = None
    label: str | None = None
    require_conflict_features: bool = attrs.field(default=True, validator=v.instance_of(bool))

    @classmethod
    def from_manifest(
        cls,
        path: str | os.PathLike[str],
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        streaming: bool = False,
        root: str | os.PathLike[str] | None = None,
        require_conflict_features: bool = True,
    ) -> ReplayDatasetConfig:
        """A config over the accepted entries of a manifest (:func:`read_manifest`); the label is
        the manifest's stem. Set ``require_conflict_features=False`` for generic (Gymnasium)
        samples. Raises :class:`ReplayDataError` for a bad manifest."""
        return cls(
            entries=read_manifest(path, root=root),
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            streaming=streaming,
            label=Path(path).stem,
            require_conflict_features=require_conflict_features,
        )

    @classmethod
    def from_capture_dir(
        cls,
        directory: str | os.PathLike[str],
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        streaming: bool = False,
        require_conflict_features: bool = True,
    ) -> ReplayDatasetConfig:
        """A config over a capture directory: its ``rollout_sample_manifest.json`` and, when
        present, ``rollout_sample_metrics.json`` (flat or ``{"samples": …}`` form) as the
        metrics map. The label is the directory name. Set ``require_conflict_features=False``
        for a Gymnasium capture (its features are ``obs_0 …``, without the Townlet conflict
        features).
        Raises :class:`ReplayDataError` when the manifest is missing or malformed."""
        root = Path(directory)
        manifest = root / CAPTURE_MANIFEST_NAME
        if not manifest.is_file():
            raise ReplayDataError(f"Capture directory {root} has no {CAPTURE_MANIFEST_NAME}")
        return cls(
            entries=read_manifest(manifest),
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            streaming=streaming,
            metrics_map=read_capture_metrics(root / CAPTURE_METRICS_NAME) or None,
            label=root.resolve().name,
            require_conflict_features=require_conflict_features,
        )


class _BucketedDataset:
    """Batch planning shared by both dataset kinds; subclasses provide ``_load_batch``."""

    _buckets: tuple[Bucket, ...]
    _signatures: tuple[Signature, ...]
    batch_size: int
    drop_last: bool
    shuffle: bool
    seed: int
    _epochs_started: int = 0

    @property
    def buckets(self) -> tuple[Bucket, ...]:
        """Sample indices grouped by shape signature, in iteration order."""
        return self._buckets

    @property
    def bucket_signatures(self) -> tuple[Signature, ...]:
        """The shape signature of each bucket, in bucket order."""
        return tuple(self._signatures[bucket[0]] for bucket in self._buckets)

    def __len__(self) -> int:
        return count_batches(self._buckets, self.batch_size, drop_last=self.drop_last)

    def batch_plan(self, epoch: int = 0) -> BatchPlan:
        """The sample indices of each batch of ``epoch``."""
        return plan_batches(
            self._buckets,
            batch_size=self.batch_size,
            drop_last=self.drop_last,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
        )

    def batches(self, epoch: int = 0) -> Iterator[ReplayBatch]:
        """The batches of ``epoch``; the same epoch always gives the same batches."""
        for indices in self.batch_plan(epoch):
            yield self._load_batch(indices)

    def __iter__(self) -> Iterator[ReplayBatch]:
        # Each iteration is the next epoch, so a reused dataset reshuffles like the reference.
        epoch = self._epochs_started
        self._epochs_started = epoch + 1
        return self.batches(epoch)

    def _load_batch(self, indices: tuple[int, ...]) -> ReplayBatch:
        raise NotImplementedError


def _with_metrics(sample: ReplaySample, metrics: Mapping[str, float] | None) -> ReplaySample:
    current = sample.metadata.get("metrics")
    if metrics is None or (isinstance(current, dict) and current):
        return sample
    return attrs.evolve(sample, metadata={**sample.metadata, "metrics": dict(metrics)})


def _sidecar_metrics(metadata: Mapping[str, Any]) -> dict[str, float] | None:
    metrics = metadata.get("metrics")
    return metrics if isinstance(metrics, dict) and metrics else None


class ReplayDataset(_BucketedDataset):
    """Replay samples read from disk, batched by shape signature.

    Eager mode loads and validates every sample in the constructor; streaming mode validates
    each file's headers and sidecar there and loads samples batch by batch, so memory stays at
    one batch. Attributes: ``config``, ``label``, ``metrics_map``, ``baseline_metrics`` (the
    aggregate of the metrics map, else of the sidecars' ``metrics``), ``event_counts`` (zero:
    disk data records no events), ``rollout_ticks`` (0), ``data_mode`` (``"replay"``).
    Raises :class:`ReplayDataError` for any unreadable entry.
    """

    data_mode = "replay"

    def __init__(self, config: ReplayDatasetConfig) -> None:
        self.config = config
        self.batch_size, self.drop_last = config.batch_size, config.drop_last
        self.shuffle, self.seed = config.shuffle, config.seed
        self.label = config.label
        self.metrics_map = dict(config.metrics_map or {})
        self.event_counts = ReplayEventCounts()
        self.rollout_ticks = 0
        self._samples: tuple[ReplaySample, ...] | None = None
        if config.streaming:
            headers = [self._header(entry) for entry in config.entries]
            signatures = [header.signature for header in headers]
            sidecar = [_sidecar_metrics(header.metadata) for header in headers]
        else:
            self._samples = tuple(self.load_sample(i) for i in range(len(config.entries)))
            signatures = [sample_signature(sample) for sample in self._samples]
            sidecar = [_sidecar_metrics(sample.metadata) for sample in self._samples]
        self._signatures = tuple(signatures)
        self._buckets = group_by_signature(signatures)
        sources = list(self.metrics_map.values()) or [m for m in sidecar if m]
        self.baseline_metrics = aggregate_metrics(sources)

    def _header(self, entry: ManifestEntry) -> SampleHeader:
        return read_sample_header(
            entry.sample,
            entry.meta,
            require_conflict_features=self.config.require_conflict_features,
        )

    @property
    def num_samples(self) -> int:
        """Number of samples (entries) in the dataset."""
        return len(self.config.entries)

    @property
    def samples(self) -> tuple[ReplaySample, ...]:
        """The loaded samples (eager mode); in streaming mode, loads them all now."""
        if self._samples is not None:
            return self._samples
        return tuple(self.load_sample(i) for i in range(self.num_samples))

    def load_sample(self, index: int) -> ReplaySample:
        """Load entry ``index`` from disk, attaching metrics-map metrics when its sidecar has
        none."""
        entry = self.config.entries[index]
        sample = load_replay_sample(
            entry.sample,
            entry.meta,
            require_conflict_features=self.config.require_conflict_features,
        )
        return _with_metrics(sample, self.metrics_map.get(entry.sample.name))

    def _load_batch(self, indices: tuple[int, ...]) -> ReplayBatch:
        if self._samples is not None:
            return build_batch([self._samples[i] for i in indices])
        return build_batch([self.load_sample(i) for i in indices])


class InMemoryReplayDataset(_BucketedDataset):
    """Samples already in memory (a fresh rollout), batched like :class:`ReplayDataset`.

    ``baseline_metrics`` defaults to the aggregate of the samples' ``metadata["metrics"]``;
    ``event_counts`` and ``rollout_ticks`` are what the capture recorded. ``data_mode`` is
    ``"rollout"``. Shuffling is off by default (the reference had none).
    Raises :class:`ReplayDataError` for no samples, :class:`ConfigError` for bad sizes.
    """

    data_mode = "rollout"

    def __init__(
        self,
        samples: Sequence[ReplaySample],
        *,
        batch_size: int = 1,
        drop_last: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        rollout_ticks: int = 0,
        label: str | None = None,
        baseline_metrics: Mapping[str, float] | None = None,
        event_counts: ReplayEventCounts | None = None,
    ) -> None:
        if not samples:
            raise ReplayDataError("In-memory dataset requires samples")
        if batch_size <= 0 or seed < 0 or rollout_ticks < 0:
            raise ConfigError(
                "batch_size must be positive and seed, rollout_ticks >= 0; got "
                f"batch_size={batch_size} seed={seed} rollout_ticks={rollout_ticks}"
            )
        self.samples = tuple(samples)
        self.batch_size, self.drop_last, self.shuffle, self.seed = (
            batch_size,
            drop_last,
            shuffle,
            seed,
        )
        self.rollout_ticks = rollout_ticks
        self.label = label
        self.event_counts = event_counts or ReplayEventCounts()
        if baseline_metrics is None:
            found = [_sidecar_metrics(sample.metadata) for sample in self.samples]
            baseline_metrics = aggregate_metrics([m for m in found if m])
        self.baseline_metrics = dict(baseline_metrics)
        self._signatures = tuple(sample_signature(s) for s in self.samples)
        self._buckets = group_by_signature(self._signatures)

    @property
    def num_samples(self) -> int:
        """Number of samples."""
        return len(self.samples)

    def _load_batch(self, indices: tuple[int, ...]) -> ReplayBatch:
        return build_batch([self.samples[i] for i in indices])
