"""``RolloutBuffer``: what a capture produced — one :class:`ReplaySample` per agent, the social
event counters and the capture's settings — and what can be done with it: an in-memory dataset
for training, a capture directory on disk, a JSON summary.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from attrs import validators as v

from townlet._summary import record_dict, short_repr
from townlet.errors import RolloutError
from townlet.policy.replay import (
    InMemoryReplayDataset,
    ReplayEventCounts,
    ReplaySample,
    aggregate_metrics,
    compute_sample_metrics,
)

ROLLOUT_DATASET_LABEL = "rollout_buffer"


def _samples(value: Iterable[ReplaySample]) -> tuple[ReplaySample, ...]:
    samples = tuple(value)
    if not samples:
        raise RolloutError(
            "Rollout buffer contains no frames; a capture yields one sample per agent"
        )
    for sample in samples:
        if not isinstance(sample, ReplaySample):
            raise RolloutError(f"RolloutBuffer.samples must be ReplaySample, got {sample!r}")
    return tuple(with_sample_metrics(sample) for sample in samples)


def with_sample_metrics(sample: ReplaySample) -> ReplaySample:
    """``sample`` itself when its sidecar holds a non-empty ``metrics`` dict, else a copy
    whose ``metrics`` are :func:`compute_sample_metrics` — what the reference's
    ``RolloutBuffer.build_dataset`` and ``save`` fill in (spec reference-replay_rollout §11),
    so the baseline, the dataset and the saved sidecars and metrics file all carry them."""
    current = sample.metadata.get("metrics")
    if isinstance(current, dict) and current:
        return sample
    return attrs.evolve(
        sample, metadata={**sample.metadata, "metrics": compute_sample_metrics(sample)}
    )


@attrs.frozen(kw_only=True, eq=False)
class RolloutBuffer:
    """A captured rollout: ``samples`` (one :class:`ReplaySample` per agent, sidecar metadata
    included: ``agent_id``, ``metrics`` (computed here for a sample given without them),
    ``source``, ``policy``, ``seed``, …), the social
    ``event_counts`` (reference §9.3), ``rollout_ticks`` (ticks stepped), ``source``
    (``"town"``, ``"gymnasium:<id>"``, ``"pettingzoo:<name>"``), ``policy`` (its kind), ``seed``
    and ``social_stage`` (the town's reward stage, None elsewhere).

    Raises :class:`RolloutError` when built with no samples.
    """

    __repr__ = short_repr
    to_dict = record_dict

    samples: tuple[ReplaySample, ...] = attrs.field(converter=_samples)
    event_counts: ReplayEventCounts = attrs.field(
        factory=ReplayEventCounts, validator=v.instance_of(ReplayEventCounts)
    )
    rollout_ticks: int = attrs.field(validator=[v.instance_of(int), v.ge(0)])
    source: str = attrs.field(validator=v.instance_of(str))
    policy: str = attrs.field(validator=v.instance_of(str))
    seed: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    social_stage: str | None = None

    def __len__(self) -> int:
        return self.frames

    @property
    def agent_ids(self) -> tuple[str, ...]:
        """The agent of each sample, in sample order."""
        return tuple(str(s.metadata["agent_id"]) for s in self.samples)

    @property
    def frames(self) -> int:
        """Recorded frames (agent-steps) over all samples."""
        return sum(s.timesteps for s in self.samples)

    @property
    def baseline_metrics(self) -> dict[str, float]:
        """The §9.2 aggregate of the samples' metrics."""
        return aggregate_metrics([dict(s.metadata.get("metrics") or {}) for s in self.samples])

    def build_dataset(
        self, batch_size: int = 1, drop_last: bool = False, *, shuffle: bool = False, seed: int = 0
    ) -> InMemoryReplayDataset:
        """Deprecated: :func:`build_rollout_dataset`."""
        _deprecated("build_dataset", "build_rollout_dataset(buffer, ...)")
        return build_rollout_dataset(
            self, batch_size=batch_size, drop_last=drop_last, shuffle=shuffle, seed=seed
        )

    def save(
        self,
        directory: str | os.PathLike[str],
        prefix: str = "rollout_sample",
        *,
        compress: bool = True,
        compress_level: int | None = None,
        workers: int | None = None,
    ) -> Path:
        """Deprecated: :func:`townlet.policy.rollout.save.save_rollout`."""
        _deprecated("save", "townlet.policy.rollout.save_rollout(buffer, directory, ...)")
        from townlet.policy.rollout.save import save_rollout

        return save_rollout(
            self,
            directory,
            prefix=prefix,
            compress=compress,
            compress_level=compress_level,
            workers=workers,
        )

    def summary(self) -> dict[str, Any]:
        """Deprecated: :func:`rollout_summary`."""
        _deprecated("summary", "rollout_summary(buffer)")
        return rollout_summary(self)


def _deprecated(method: str, instead: str) -> None:
    # Logic lives in free functions (STYLE.md); the methods stay for existing callers.
    warnings.warn(
        f"RolloutBuffer.{method}() is deprecated: use {instead}",
        DeprecationWarning,
        stacklevel=3,
    )


def build_rollout_dataset(
    buffer: RolloutBuffer,
    *,
    batch_size: int = 1,
    drop_last: bool = False,
    shuffle: bool = False,
    seed: int = 0,
) -> InMemoryReplayDataset:
    """An :class:`InMemoryReplayDataset` over ``buffer.samples`` labelled ``rollout_buffer``,
    carrying ``rollout_ticks``, ``event_counts`` and ``baseline_metrics``. Raises
    :class:`~townlet.errors.ConfigError` for a non-positive ``batch_size``."""
    return InMemoryReplayDataset(
        buffer.samples,
        batch_size=batch_size,
        drop_last=drop_last,
        shuffle=shuffle,
        seed=seed,
        rollout_ticks=buffer.rollout_ticks,
        label=ROLLOUT_DATASET_LABEL,
        baseline_metrics=buffer.baseline_metrics,
        event_counts=buffer.event_counts,
    )


def episode_returns(sample: ReplaySample) -> list[float]:
    """Undiscounted returns of the episodes that end (``done``) inside ``sample``; the
    unfinished tail is left out."""
    ends = np.flatnonzero(sample.dones)
    if ends.size == 0:
        return []
    sums = np.cumsum(sample.rewards, dtype=np.float64)[ends]
    return np.diff(sums, prepend=0.0).tolist()  # type: ignore[no-any-return]


def rollout_summary(buffer: RolloutBuffer) -> dict[str, Any]:
    """``source, policy, seed, social_stage, rollout_ticks, agents, frames``; ``mean_return``
    (per-agent reward sum over the capture, averaged over agents); ``episodes`` completed and
    their ``mean_episode_return`` (None when none ended); ``events`` (the eight counters)."""
    returns = [float(s.rewards.sum(dtype=np.float64)) for s in buffer.samples]
    episodes = [r for s in buffer.samples for r in episode_returns(s)]
    return {
        "source": buffer.source,
        "policy": buffer.policy,
        "seed": buffer.seed,
        "social_stage": buffer.social_stage,
        "rollout_ticks": buffer.rollout_ticks,
        "agents": len(buffer.samples),
        "frames": buffer.frames,
        "mean_return": float(np.mean(returns)),
        "episodes": len(episodes),
        "mean_episode_return": float(np.mean(episodes)) if episodes else None,
        "events": buffer.event_counts.to_dict(),
    }
