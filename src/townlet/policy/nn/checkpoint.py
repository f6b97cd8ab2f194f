"""Checkpoints: network spec, parameters, Adam state and counters in one safe file.

Format (version 1): ``torch.save`` of a flat ``dict[str, Tensor | str]``:

* ``"header"`` — a JSON string: ``{"format": "townlet-checkpoint", "format_version": 1,
  "spec": {...}, "counters": {...}, "extra": {...}, "adam_steps": {name: int} | null}``;
* ``"params/<name>"`` — each parameter;
* ``"adam/exp_avg/<name>"``, ``"adam/exp_avg_sq/<name>"`` — Adam moments, when saved.

Loading uses ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers:
a checkpoint cannot run code. Files are written to a temporary file in the same directory and
moved into place with ``os.replace``, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from townlet._atomic import atomic_write
from townlet._summary import record_dict, short_repr
from townlet.errors import CheckpointError
from townlet.policy.nn.adam import AdamState
from townlet.policy.nn.network import Params, param_shapes
from townlet.policy.nn.spec import NetworkSpec, spec_from_dict

CHECKPOINT_FORMAT = "townlet-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1

_PARAM = "params/"
_MU = "adam/exp_avg/"
_NU = "adam/exp_avg_sq/"


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
    payload: dict[str, torch.Tensor | str] = {"header": header}
    payload.update({_PARAM + k: v.detach().cpu() for k, v in params.items()})
    if adam_state is not None:
        payload.update({_MU + k: v.detach().cpu() for k, v in adam_state.exp_avg.items()})
        payload.update({_NU + k: v.detach().cpu() for k, v in adam_state.exp_avg_sq.items()})
    atomic_write(target, lambda handle: torch.save(payload, handle))
    return target


def _header(
    path: Path,
    spec: NetworkSpec,
    adam_state: AdamState | None,
    counters: Mapping[str, int | float],
    extra: Mapping[str, Any],
) -> str:
    for key, value in counters.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CheckpointError(f"{path}: counter {key!r} must be an int or float, got {value!r}")
    header = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "spec": spec.to_dict(),
        "counters": dict(counters),
        "extra": dict(extra),
        "adam_steps": None if adam_state is None else dict(adam_state.steps),
    }
    try:
        return json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: extra/counters are not JSON-serialisable: {exc}") from exc


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

    Raises ``CheckpointError`` (naming the file) when it is missing, unreadable, not a townlet
    checkpoint, of an unknown format version, internally inconsistent, or — when
    ``expected_spec`` is given — made for a different network (the message names both specs).
    """
    source = Path(path)
    payload = _read_payload(source, map_location)
    header = _parse_header(source, payload.get("header"))
    try:
        spec = spec_from_dict(header["spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid network spec in header: {exc}") from exc
    if expected_spec is not None and spec != expected_spec:
        raise CheckpointError(
            f"{source}: checkpoint network spec {spec!r} does not match expected {expected_spec!r}"
        )
    params = {k[len(_PARAM) :]: v for k, v in payload.items() if k.startswith(_PARAM)}
    _check_params(params, spec, source)
    return Checkpoint(
        spec=spec,
        params=params,
        adam_state=_adam_state(source, payload, header.get("adam_steps"), params),
        counters=dict(header.get("counters", {})),
        extra=dict(header.get("extra", {})),
        format_version=int(header["format_version"]),
    )


def _read_payload(source: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not source.is_file():
        raise CheckpointError(f"{source}: checkpoint file not found")
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{source}: not a readable checkpoint ({exc})") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{source}: not a townlet checkpoint (top level is not a dict)")
    return payload


def _parse_header(source: Path, raw: object) -> dict[str, Any]:
    if not isinstance(raw, str):
        raise CheckpointError(f"{source}: not a townlet checkpoint (no 'header' string)")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: checkpoint header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source}: not a townlet checkpoint (header format missing)")
    if header.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format_version {header.get('format_version')!r} is not "
            f"supported (expected {CHECKPOINT_FORMAT_VERSION})"
        )
    return header


def _adam_state(
    source: Path, payload: Mapping[str, Any], steps: object, params: Params
) -> AdamState | None:
    if steps is None:
        return None
    mu = {k[len(_MU) :]: v for k, v in payload.items() if k.startswith(_MU)}
    nu = {k[len(_NU) :]: v for k, v in payload.items() if k.startswith(_NU)}
    if not isinstance(steps, dict) or not set(steps) == set(mu) == set(nu) == set(params):
        raise CheckpointError(f"{source}: Adam state does not cover the same parameters")
    return AdamState(steps={k: int(s) for k, s in steps.items()}, exp_avg=mu, exp_avg_sq=nu)
