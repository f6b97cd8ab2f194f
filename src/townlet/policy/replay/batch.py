"""ReplayBatch: B samples of one shape signature stacked along a leading batch axis."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from townlet._summary import record_dict, short_repr
from townlet.errors import ReplayDataError
from townlet.policy.replay.sample import (
    REQUIRED_CONFLICT_FEATURES,
    STEP_ARRAY_FIELDS,
    TRAINING_ARRAY_FIELDS,
    ReplaySample,
    metadata_feature_names,
    sample_signature,
)


def _batch_array(field: str, value: object, dtype: type[Any]) -> NDArray[Any]:
    array = np.asarray(value)
    if array.dtype.hasobject or array.dtype.kind not in "biuf":
        raise ReplayDataError(f"ReplayBatch.{field} must be numeric, got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def _convert_maps(value: object) -> NDArray[np.float32]:
    maps = _batch_array("maps", value, np.float32)
    maps = maps[:, None] if maps.ndim == 4 else maps
    if maps.ndim != 5:
        raise ReplayDataError(
            "ReplayBatch.maps must have shape (batch, channels, height, width) or "
            f"(batch, timesteps, channels, height, width), got {maps.shape}"
        )
    return maps


def _convert_features(value: object) -> NDArray[np.float32]:
    features = _batch_array("features", value, np.float32)
    features = features[:, None] if features.ndim == 2 else features
    if features.ndim != 3:
        raise ReplayDataError(
            "ReplayBatch.features must have shape (batch, feature_dim) or "
            f"(batch, timesteps, feature_dim), got {features.shape}"
        )
    return features


def _steps(field: str, value: object, dtype: type[Any]) -> NDArray[Any]:
    array = _batch_array(field, value, dtype)
    array = array[:, None] if array.ndim == 1 else array
    if array.ndim != 2:
        raise ReplayDataError(
            f"ReplayBatch.{field} must have shape (batch, timesteps), got {array.shape}"
        )
    return array


def _convert_actions(value: object) -> NDArray[np.int64]:
    return _steps("actions", value, np.int64)


def _convert_old_log_probs(value: object) -> NDArray[np.float32]:
    return _steps("old_log_probs", value, np.float32)


def _convert_value_preds(value: object) -> NDArray[np.float32]:
    return _steps("value_preds", value, np.float32)


def _convert_rewards(value: object) -> NDArray[np.float32]:
    return _steps("rewards", value, np.float32)


def _convert_dones(value: object) -> NDArray[np.bool_]:
    return _steps("dones", value, np.bool_)


def _freeze(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


def _freeze_all(value: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    return tuple(types.MappingProxyType(dict(item)) for item in value)


@attrs.frozen(kw_only=True, eq=False)
class ReplayBatch:
    """B trajectories of T steps: ``maps (B,T,C,H,W)``, ``features (B,T,D)``, ``actions``,
    ``old_log_probs``, ``rewards``, ``dones`` ``(B,T)`` and ``value_preds`` ``(B,T)`` or
    ``(B,T+1)``.

    ``metadata`` describes the batch (``feature_names``, ``map_shape``, ``timesteps``,
    ``value_pred_steps``, ``training_arrays`` from sample 0; ``action_dim`` = the largest of
    the samples'; ``metrics``: one entry per sample, None where absent); ``sample_metadata``
    holds each sample's sidecar. Arrays are fresh and writable (they are built per batch and
    handed to torch). Raises :class:`ReplayDataError` on inconsistent shapes (reference §7).
    """

    __repr__ = short_repr
    to_dict = record_dict

    maps: NDArray[np.float32] = attrs.field(converter=_convert_maps)
    features: NDArray[np.float32] = attrs.field(converter=_convert_features)
    actions: NDArray[np.int64] = attrs.field(converter=_convert_actions)
    old_log_probs: NDArray[np.float32] = attrs.field(converter=_convert_old_log_probs)
    value_preds: NDArray[np.float32] = attrs.field(converter=_convert_value_preds)
    rewards: NDArray[np.float32] = attrs.field(converter=_convert_rewards)
    dones: NDArray[np.bool_] = attrs.field(converter=_convert_dones)
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze)
    sample_metadata: tuple[Mapping[str, Any], ...] = attrs.field(default=(), converter=_freeze_all)

    def __attrs_post_init__(self) -> None:
        check_batch_shapes(self)

    @property
    def batch_size(self) -> int:
        """B."""
        return int(self.actions.shape[0])

    @property
    def timesteps(self) -> int:
        """T."""
        return int(self.actions.shape[1])

    @property
    def has_bootstrap_value(self) -> bool:
        """Whether ``value_preds`` has T+1 columns."""
        return int(self.value_preds.shape[1]) == self.timesteps + 1

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """``metadata["feature_names"]`` as a tuple, or None."""
        return metadata_feature_names(self.metadata)

    def conflict_stats(self) -> dict[str, float]:
        """``<f>_mean``/``<f>_max`` of each conflict feature over batch × time (see
        :func:`batch_conflict_stats`)."""
        return batch_conflict_stats(self)


def check_batch_shapes(batch: ReplayBatch) -> None:
    """Check batch sizes and timestep lengths agree (reference §7 steps 5–8).

    Raises ``ReplayDataError`` naming the mismatch.
    """
    size = batch.maps.shape[0]
    if batch.features.shape[0] != size:
        raise ReplayDataError("ReplayBatch: map and feature batch sizes must match")
    for field in TRAINING_ARRAY_FIELDS:
        got = getattr(batch, field).shape[0]
        if got != size:
            raise ReplayDataError(
                f"ReplayBatch.{field} batch size mismatch: expected {size}, got {got}"
            )
    steps = batch.actions.shape[1]
    for field in STEP_ARRAY_FIELDS:
        got = getattr(batch, field).shape[1]
        if got != steps:
            raise ReplayDataError(
                f"ReplayBatch.{field} timestep mismatch: expected {steps}, got {got}"
            )
    if batch.value_preds.shape[1] not in (steps, steps + 1):
        raise ReplayDataError(
            "ReplayBatch.value_preds must have length matching timesteps or timesteps + 1 "
            f"in batch; got {batch.value_preds.shape[1]} for {steps} step(s)"
        )


def _batch_metadata(samples: Sequence[ReplaySample]) -> dict[str, Any]:
    first = samples[0].metadata
    return {
        "feature_names": first.get("feature_names"),
        "map_shape": first.get("map_shape"),
        "timesteps": first.get("timesteps"),
        "value_pred_steps": first.get("value_pred_steps"),
        "training_arrays": first.get("training_arrays", list(TRAINING_ARRAY_FIELDS)),
        "metrics": [sample.metadata.get("metrics") for sample in samples],
        "action_dim": max(sample.action_dim for sample in samples),
    }


def build_batch(samples: Sequence[ReplaySample]) -> ReplayBatch:
    """Stack samples of one shape signature into a :class:`ReplayBatch`.

    Raises :class:`ReplayDataError` for an empty list or samples whose shapes differ (the
    message names the first differing sample index and both signatures).
    """
    if not samples:
        raise ReplayDataError("at least one sample required to build batch")
    expected = sample_signature(samples[0])
    for index, sample in enumerate(samples[1:], start=1):
        got = sample_signature(sample)
        if got != expected:
            raise ReplayDataError(
                f"cannot batch sample {index}: shapes {got} differ from sample 0's {expected}"
            )
    return ReplayBatch(
        maps=np.stack([s.map for s in samples]),
        features=np.stack([s.features for s in samples]),
        actions=np.stack([s.actions for s in samples]),
        old_log_probs=np.stack([s.old_log_probs for s in samples]),
        value_preds=np.stack([s.value_preds for s in samples]),
        rewards=np.stack([s.rewards for s in samples]),
        dones=np.stack([s.dones for s in samples]),
        metadata=_batch_metadata(samples),
        sample_metadata=[s.metadata for s in samples],
    )


def batch_conflict_stats(batch: ReplayBatch) -> dict[str, float]:
    """``<f>_mean`` and ``<f>_max`` over batch × time for each conflict feature named in
    ``metadata["feature_names"]``; ``{}`` without names."""
    names = batch.feature_names
    if names is None:
        return {}
    stats: dict[str, float] = {}
    for name in REQUIRED_CONFLICT_FEATURES:
        if name in names:
            values = batch.features[..., names.index(name)].reshape(-1)
            stats[f"{name}_mean"] = float(values.mean())
            stats[f"{name}_max"] = float(values.max())
    return stats


def summarize_batch(batch: ReplayBatch, batch_index: int = 1) -> dict[str, float]:
    """One batch's summary: ``batch``, ``batch_size``, ``timesteps``, ``feature_dim`` and the
    conflict stats prefixed ``conflict.``.

    The reference's ``feature_dim`` was really T (it read ``features.shape[1]`` of a
    ``(B,T,D)`` array); here ``timesteps`` is T and ``feature_dim`` is D.
    """
    summary = {
        "batch": float(batch_index),
        "batch_size": float(batch.batch_size),
        "timesteps": float(batch.timesteps),
        "feature_dim": float(batch.features.shape[2]),
    }
    summary.update({f"conflict.{k}": v for k, v in batch_conflict_stats(batch).items()})
    return summary
