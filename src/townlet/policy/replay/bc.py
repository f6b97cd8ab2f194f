"""Behaviour-cloning data: the BC manifest loader and frame flattening (BC spec §2)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from townlet.errors import ReplayDataError
from townlet.policy.replay.io import load_replay_sample
from townlet.policy.replay.manifest import read_manifest
from townlet.policy.replay.sample import ReplaySample

BCFrames = tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]


def load_bc_samples(
    manifest_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    include_rejected: bool = False,
) -> list[ReplaySample]:
    """Load every accepted sample of a BC manifest (e.g. ``data/bc_datasets/manifests/*.json``).

    Paths resolve against the manifest's directory, then ``root`` (the repository the manifest
    was written for), then the current directory. Unlike the reference, a missing file is an
    error rather than a silently skipped entry, ``"accepted": false`` entries are skipped, and
    every replay manifest layout is accepted.
    Raises :class:`ReplayDataError` naming the manifest or sample file.
    """
    entries = read_manifest(manifest_path, root=root, include_rejected=include_rejected)
    return [load_replay_sample(entry.sample, entry.meta) for entry in entries]


def flatten_bc_frames(samples: Sequence[ReplaySample]) -> BCFrames:
    """Every step of every sample as one frame: ``(maps (N,C,H,W), features (N,D), actions
    (N,))`` with N = Σ T.

    Maps stay channel-first; the reference permuted each ``(C,H,W)`` frame with axes
    ``(2, 0, 1)`` (it assumed HWC), which only changed the flattened order.
    Raises :class:`ReplayDataError` for no samples or samples whose map/feature shapes differ.
    """
    if not samples:
        raise ReplayDataError("BC dataset requires at least one frame")
    first = samples[0]
    for index, sample in enumerate(samples):
        if sample.map_shape != first.map_shape or sample.feature_dim != first.feature_dim:
            raise ReplayDataError(
                f"BC sample {index} has map {sample.map_shape} and {sample.feature_dim} "
                f"features; sample 0 has map {first.map_shape} and {first.feature_dim}"
            )
    maps = np.concatenate([sample.map for sample in samples])
    features = np.concatenate([sample.features for sample in samples])
    actions = np.concatenate([sample.actions for sample in samples])
    return maps, features, actions
