"""Shared helpers of the replay tests: the reference corpus location and a sample factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from townlet.policy.replay import ReplaySample

REFERENCE_ROOT = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / ("townlet-artifacts")
)
PHASE4 = REFERENCE_ROOT / "artifacts" / "phase4"


def reference_root() -> Path:
    """The corpus root, or skip the calling test when it is absent."""
    if not REFERENCE_ROOT.is_dir():
        pytest.skip(f"reference corpus not found at {REFERENCE_ROOT}")
    return REFERENCE_ROOT


def capture_dirs() -> list[Path]:
    """The corpus capture directories (those holding a rollout manifest)."""
    if not PHASE4.is_dir():
        return []
    return sorted(d for d in PHASE4.iterdir() if (d / "rollout_sample_manifest.json").is_file())


def corpus_samples() -> list[Path]:
    """Every replay sample npz in the corpus."""
    if not REFERENCE_ROOT.is_dir():
        return []
    return sorted(REFERENCE_ROOT.rglob("*.npz"))


FEATURE_NAMES = ["need_hunger", "rivalry_max", "rivalry_avoid_count", "lateness_counter"]


def make_sample(
    timesteps: int = 3,
    *,
    feature_dim: int = 4,
    map_shape: tuple[int, int, int] = (2, 3, 3),
    bootstrap: bool = True,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
) -> ReplaySample:
    """A small valid sample with random contents; feature_names from FEATURE_NAMES (D=4)."""
    rng = np.random.default_rng(seed)
    meta = {"feature_names": FEATURE_NAMES[:feature_dim]} if feature_dim == 4 else {}
    meta.update(metadata or {})
    return ReplaySample(
        map=rng.random((timesteps, *map_shape), dtype=np.float32),
        features=rng.random((timesteps, feature_dim), dtype=np.float32),
        actions=rng.integers(0, 3, size=timesteps),
        old_log_probs=-rng.random(timesteps, dtype=np.float32),
        value_preds=rng.random(timesteps + int(bootstrap), dtype=np.float32),
        rewards=rng.standard_normal(timesteps).astype(np.float32),
        dones=rng.random(timesteps) < 0.2,
        metadata=meta,
    )
