"""Many :class:`ReplaySample` records from one agent-major block, validated once.

A capture holds its frames as ``(N, T, …)`` arrays, one row per agent. Building N samples
through ``ReplaySample(...)`` runs the seven converters and the shape and sidecar checks N
times; :func:`samples_from_block` runs the same checks once on each whole ``(N, …)`` array and
then builds the records without their converters. The records are equal field for field to
what the constructor gives (dtypes, shapes, read-only views, sidecar with the same keys in the
same order), and a bad block raises the constructor's :class:`ReplayDataError` message, with
the row (and ``agent_id`` when the sidecar has one) added where one row is at fault.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from townlet.errors import ReplayDataError
from townlet.policy.replay.sample import (
    NPZ_KEYS,
    TRAINING_ARRAY_FIELDS,
    ReplaySample,
    Shape,
    check_array_shapes,
    check_dtype,
    check_metadata,
    normalized_shape,
)

# The constructor's converter order, so that a block with several faults reports the same
# field first as the constructor would for one of its rows.
_FIELD_ORDER = ("features", "actions", "old_log_probs", "value_preds", "rewards", "dones", "map")
_FLOAT_FIELDS = frozenset({"map", "features", "old_log_probs", "value_preds", "rewards"})
_CHECKED_KEYS = ("feature_names", "timesteps", "value_pred_steps", "action_dim")
# Elements per finiteness chunk: a bool scratch of this size stays in L2, where one
# isfinite over the whole block would allocate (and page-fault) a bool array as large as it.
_CHUNK = 1 << 16


def samples_from_block(
    arrays: Mapping[str, NDArray[Any] | None], metadata: Sequence[Mapping[str, Any]]
) -> list[ReplaySample]:
    """One :class:`ReplaySample` per row of agent-major arrays, validated once per field.

    ``arrays`` maps the npz member names (``map``, ``features``, ``actions``,
    ``old_log_probs``, ``value_preds``, ``rewards``, ``dones``) to arrays whose first axis has
    one row per sample (``map`` may be missing or None: features-only samples); ``metadata``
    holds each sample's sidecar. Sample ``i`` equals ``ReplaySample(**{k: a[i]}, metadata=
    metadata[i])``; its arrays are read-only views of the (dtype-converted) blocks.

    Raises :class:`ReplayDataError` with the constructor's message (naming the field, and the
    row at fault for NaN/Inf, negative actions, non-0/1 dones and sidecar mismatches), or
    naming the field whose row count differs from ``len(metadata)``.
    """
    n = len(metadata)
    blocks: dict[str, NDArray[Any]] = {}
    for field in _FIELD_ORDER:
        value = arrays.get(field)
        if value is None and field == "map":
            # The constructor's default: an empty (T, 0, 0, 0) map, T from the actions.
            value = np.zeros((n, blocks["actions"].shape[1], 0, 0, 0), np.float32)
        blocks[field] = _convert_block(field, value, n, metadata)
    shapes = {key: tuple(int(s) for s in blocks[key].shape[1:]) for key in NPZ_KEYS}
    check_array_shapes(shapes)
    sidecars = _sidecars(metadata, shapes, blocks["actions"])
    return [_trusted(blocks, i, sidecars[i]) for i in range(n)]


def _row_error(message: str, row: int, metadata: Sequence[Mapping[str, Any]]) -> ReplayDataError:
    agent = metadata[row].get("agent_id")
    where = f"row {row}" if agent is None else f"row {row}, agent_id {agent!r}"
    return ReplayDataError(f"{message} ({where} of the block)")


def _convert_block(
    field: str, value: object, n: int, metadata: Sequence[Mapping[str, Any]]
) -> NDArray[Any]:
    """The block of ``field`` in its canonical dtype and normalised per-row shape, read-only,
    after the constructor's per-field checks on every row."""
    try:
        block = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ReplayDataError(f"ReplaySample.{field} must be a numpy array: {exc}") from exc
    if block.ndim == 0 or block.shape[0] != n:
        rows = block.shape[0] if block.ndim else "no"
        raise ReplayDataError(
            f"ReplaySample.{field} block has {rows} rows, expected {n} (one per sidecar)"
        )
    check_dtype(field, block.dtype)
    block = block.reshape((n, *normalized_shape(field, block.shape[1:])))
    if field in _FLOAT_FIELDS:
        block = block.astype(np.float32, copy=False)
        row = _first_non_finite_row(block)
        if row is not None:
            bad = int(block[row].size - np.count_nonzero(np.isfinite(block[row])))
            message = f"ReplaySample.{field} contains {bad} NaN/Inf value(s)"
            raise _row_error(message, row, metadata)
    elif field == "actions":
        if block.size and int(block.min()) < 0:
            row = int(np.argmax((block < 0).reshape(n, -1).any(axis=1)))
            message = f"ReplaySample.actions must be >= 0, got {int(block[row].min())}"
            raise _row_error(message, row, metadata)
        block = block.astype(np.int64, copy=False)
    else:  # dones
        if block.dtype.kind != "b":
            ok = np.isin(block, (0, 1)).reshape(n, -1).all(axis=1)
            if not ok.all():
                message = "ReplaySample.dones must be bool (or integers 0/1)"
                raise _row_error(message, int(np.argmin(ok)), metadata)
        block = block.astype(np.bool_, copy=False)
    view = block.view()  # the caller's array keeps its flags; rows of this view are read-only
    view.flags.writeable = False
    return view


def _first_non_finite_row(block: NDArray[np.float32]) -> int | None:
    """The first row holding NaN/Inf, or None; scans in cache-sized chunks."""
    flat = block.reshape(-1)
    scratch = np.empty(min(_CHUNK, flat.size), np.bool_)
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start : start + _CHUNK]
        out = scratch[: chunk.size]
        if not np.isfinite(chunk, out=out).all():
            per_row = block.size // block.shape[0]
            return int((start + int(np.argmin(out))) // per_row)
    return None


def _sidecars(
    metadata: Sequence[Mapping[str, Any]],
    shapes: Mapping[str, Shape],
    actions: NDArray[np.int64],
) -> list[types.MappingProxyType[str, Any]]:
    """Each row's sidecar as the constructor leaves it, after its checks.

    :func:`check_metadata` runs again only when a row's checked keys differ (in value or type)
    from the last row checked, so a block whose rows share them is checked once.
    """
    highest = actions.max(axis=1)
    timesteps, value_steps = shapes["actions"][0], shapes["value_preds"][0]
    checked: object = None
    sidecars = []
    for row, source in enumerate(metadata):
        meta = dict(source)
        key = tuple((type(v), v) for v in (meta.get(k) for k in _CHECKED_KEYS))
        if key != checked:
            try:
                check_metadata(meta, shapes)
            except ReplayDataError as exc:
                raise _row_error(str(exc), row, metadata) from exc
            checked = key
        declared = meta.get("action_dim")
        if declared is not None and declared <= highest[row]:
            message = (
                f"ReplaySample.metadata['action_dim'] is {declared} but actions reach "
                f"{int(highest[row])}"
            )
            raise _row_error(message, row, metadata)
        meta.setdefault("training_arrays", list(TRAINING_ARRAY_FIELDS))
        meta.setdefault("timesteps", timesteps)
        meta.setdefault("value_pred_steps", value_steps)
        sidecars.append(types.MappingProxyType(meta))
    return sidecars


def _trusted(
    blocks: Mapping[str, NDArray[Any]], row: int, sidecar: types.MappingProxyType[str, Any]
) -> ReplaySample:
    # Only after every check above passed: the fields are set as the converters would have
    # left them, without running them again. Frozen attrs records refuse normal assignment.
    sample: ReplaySample = object.__new__(ReplaySample)
    for field in NPZ_KEYS:
        object.__setattr__(sample, field, blocks[field][row])
    object.__setattr__(sample, "metadata", sidecar)
    return sample
