"""Checkpoints: network spec, parameters, Adam state and counters in one safe file.

Format (version 1): ``torch.save`` of a flat ``dict[str, Tensor | str]``:

* ``"header"`` — a JSON string: ``{"format": "townlet-checkpoint", "format_version": 1,
  "spec": {...}, "counters": {...}, "extra": {...}, "adam_steps": {name: int} | null,
  "content_sha256": "<hex>"}`` (the hash: :mod:`townlet.policy.nn.checkpoint_hash`);
* ``"params/<name>"`` — each parameter;
* ``"adam/exp_avg/<name>"``, ``"adam/exp_avg_sq/<name>"`` — Adam moments, when saved.

Loading uses ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers:
a checkpoint cannot run code. Loading also checks every field's type, that every tensor is
float32 and finite, and the content hash (a flipped bit is refused). Files are written to a
temporary file in the same directory and moved into place with ``os.replace``, so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from townlet._atomic import atomic_write, remove_stale_temp_files
from townlet._input_limits import (
    check_allocation,
    check_int,
    loads_json,
    one_line,
    open_regular,
    show_path,
)
from townlet._input_limits import short_repr as value_repr
from townlet._summary import record_dict, short_repr
from townlet.errors import CheckpointError
from townlet.policy.nn.adam import AdamState
from townlet.policy.nn.checkpoint_hash import HASH_KEY, check_hash, check_tensors, content_hash
from townlet.policy.nn.network import Params, param_shapes
from townlet.policy.nn.spec import NetworkSpec, spec_from_dict

CHECKPOINT_FORMAT = "townlet-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1

_PARAM = "params/"
_MU = "adam/exp_avg/"
_NU = "adam/exp_avg_sq/"
_I64 = 2**63 - 1


@attrs.frozen(kw_only=True, eq=False)
class Checkpoint:
    """The contents of a checkpoint file.

    ``counters`` are the integer/float positions a run resumes from (updates, epochs, seeds);
    ``extra`` is free JSON metadata (e.g. the config a run used). Tensors are on the CPU unless
    ``load_checkpoint`` was given a ``map_location``.
    """

    __repr__ = short_repr
    to_dict = record_dict

    spec: NetworkSpec
    params: Params
    adam_state: AdamState | None = None
    counters: Mapping[str, int | float] = attrs.field(factory=dict)
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    format_version: int = CHECKPOINT_FORMAT_VERSION


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    spec: NetworkSpec,
    params: Params,
    adam_state: AdamState | None = None,
    counters: Mapping[str, int | float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically to ``path`` and return it as a ``Path``.

    Raises ``CheckpointError`` when ``params`` does not have ``spec``'s names and shapes, when a
    counter is not an int/float, or when ``extra`` is not JSON-serialisable.
    """
    target = Path(path)
    _check_params(params, spec, target)
    header = _header(target, spec, adam_state, counters or {}, extra or {})
    tensors = {_PARAM + k: v.detach().cpu() for k, v in params.items()}
    if adam_state is not None:
        tensors.update({_MU + k: v.detach().cpu() for k, v in adam_state.exp_avg.items()})
        tensors.update({_NU + k: v.detach().cpu() for k, v in adam_state.exp_avg_sq.items()})
    header[HASH_KEY] = content_hash(header, tensors)
    payload: dict[str, torch.Tensor | str] = {"header": json.dumps(header, allow_nan=False)}
    payload.update(tensors)
    remove_stale_temp_files(target)
    atomic_write(target, lambda handle: torch.save(payload, handle))
    return target


def _header(
    path: Path,
    spec: NetworkSpec,
    adam_state: AdamState | None,
    counters: Mapping[str, int | float],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    for key, value in counters.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CheckpointError(f"{path}: counter {key!r} must be an int or float, got {value!r}")
    header: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "spec": spec.to_dict(),
        "counters": dict(counters),
        "extra": dict(extra),
        "adam_steps": None if adam_state is None else dict(adam_state.steps),
    }
    try:
        json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: extra/counters are not JSON-serialisable: {exc}") from exc
    return header


def _check_params(params: Params, spec: NetworkSpec, path: Path) -> None:
    expected = param_shapes(spec)
    actual = {k: tuple(v.shape) for k, v in params.items()}
    if actual != expected:
        raise CheckpointError(
            f"{path}: parameters do not match network spec {spec!r}: "
            f"expected {expected}, got {actual}"
        )


def load_checkpoint(
    path: str | os.PathLike[str],
    expected_spec: NetworkSpec | None = None,
    *,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises ``CheckpointError`` (naming the file) when it is missing, not a regular file,
    unreadable, larger than the memory available, not a townlet checkpoint (a pickle is refused
    without running it), of an unknown format version, internally inconsistent (a field of the
    wrong type, a tensor of the wrong dtype or shape), damaged (its content hash does not
    match), holds NaN/Inf weights, or — when ``expected_spec`` is given — was made for a
    different network (the message names both specs). A checkpoint written before content
    hashes were added (no ``content_sha256``) loads with its other checks.
    """
    source = Path(path)
    payload = _read_payload(source)
    header = _parse_header(source, payload.get("header"))
    spec = _header_spec(source, header)
    if expected_spec is not None and spec != expected_spec:
        raise CheckpointError(
            f"{source}: checkpoint network spec {spec!r} does not match expected {expected_spec!r}"
        )
    params = {k[len(_PARAM) :]: v for k, v in payload.items() if k.startswith(_PARAM)}
    _check_params(params, spec, source)
    check_tensors(source, payload)
    check_hash(source, header, payload)
    checkpoint = Checkpoint(
        spec=spec,
        params=params,
        adam_state=_adam_state(source, payload, header.get("adam_steps"), params),
        counters=_counters(source, header.get("counters", {})),
        extra=_extra(source, header.get("extra", {})),
        format_version=int(header["format_version"]),
    )
    return checkpoint if str(map_location) == "cpu" else _moved(checkpoint, map_location)


def _read_payload(source: Path) -> dict[str, Any]:
    label = f"{show_path(source)}: checkpoint file"
    fd = open_regular(source, CheckpointError, label)
    with os.fdopen(fd, "rb") as handle:
        check_allocation(os.fstat(handle.fileno()).st_size, CheckpointError, label)
        try:
            with warnings.catch_warnings():  # e.g. "pickle protocol 4": the error says enough
                warnings.simplefilter("ignore")
                payload = torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            raise CheckpointError(_load_failure(source, exc)) from None
    if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
        raise CheckpointError(f"{source}: not a townlet checkpoint (top level is not a dict)")
    return payload


def _load_failure(source: Path, exc: Exception) -> str:
    # torch's refusal spans lines and advises weights_only=False (never do that): keep only
    # what its safe unpickler objected to.
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0]
        detail = f"the safe loader refused it: {one_line(reason, limit=160)}"
    else:
        detail = one_line(f"{type(exc).__name__}: {text}", limit=200)
    return f"{show_path(source)}: not a readable checkpoint ({detail})"


def _parse_header(source: Path, raw: object) -> dict[str, Any]:
    if not isinstance(raw, str):
        raise CheckpointError(f"{source}: not a townlet checkpoint (no 'header' string)")
    header = loads_json(raw, CheckpointError, f"{source}: checkpoint header")
    if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source}: not a townlet checkpoint (header format missing)")
    version = header.get("format_version")
    if isinstance(version, bool) or version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format_version {value_repr(version)} is not "
            f"supported (expected {CHECKPOINT_FORMAT_VERSION})"
        )
    return header


def _header_spec(source: Path, header: Mapping[str, Any]) -> NetworkSpec:
    try:
        return spec_from_dict(header["spec"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        detail = one_line(str(exc), limit=200)
        raise CheckpointError(f"{source}: invalid network spec in header: {detail}") from None


def _adam_state(
    source: Path, payload: Mapping[str, Any], steps: object, params: Params
) -> AdamState | None:
    if steps is None:
        return None
    mu = {k[len(_MU) :]: v for k, v in payload.items() if k.startswith(_MU)}
    nu = {k[len(_NU) :]: v for k, v in payload.items() if k.startswith(_NU)}
    if not isinstance(steps, dict) or not set(steps) == set(mu) == set(nu) == set(params):
        raise CheckpointError(f"{source}: Adam state does not cover the same parameters")
    for name, count in steps.items():
        check_int(count, CheckpointError, f"{source}: adam_steps[{name!r}]", low=0, high=_I64)
    for name, tensor in (*mu.items(), *nu.items()):
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise CheckpointError(f"{source}: Adam moment of {name!r} has the wrong shape")
    return AdamState(steps=dict(steps), exp_avg=mu, exp_avg_sq=nu)


def _counters(source: Path, counters: object) -> dict[str, int | float]:
    if not isinstance(counters, dict):
        raise CheckpointError(f"{source}: 'counters' must be an object, got {value_repr(counters)}")
    for key, value in counters.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CheckpointError(
                f"{source}: counter {key!r} must be an int or float, got {value_repr(value)}"
            )
    return dict(counters)


def _extra(source: Path, extra: object) -> dict[str, Any]:
    if not isinstance(extra, dict):
        raise CheckpointError(f"{source}: 'extra' must be an object, got {value_repr(extra)}")
    return dict(extra)


def _moved(checkpoint: Checkpoint, device: str | torch.device) -> Checkpoint:
    """The checkpoint with its tensors on ``device`` (after every check ran on the CPU)."""
    try:
        params = {k: v.to(device) for k, v in checkpoint.params.items()}
    except (RuntimeError, AssertionError) as exc:
        raise CheckpointError(
            f"cannot move the checkpoint to {device!s}: {one_line(str(exc), limit=200)}"
        ) from None
    adam = checkpoint.adam_state
    if adam is not None:
        adam = AdamState(
            steps=adam.steps,
            exp_avg={k: v.to(device) for k, v in adam.exp_avg.items()},
            exp_avg_sq={k: v.to(device) for k, v in adam.exp_avg_sq.items()},
        )
    return attrs.evolve(checkpoint, params=params, adam_state=adam)
