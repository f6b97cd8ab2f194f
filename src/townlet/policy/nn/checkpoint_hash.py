"""Integrity of a checkpoint's contents: a content hash, tensor types, finite values.

``save_checkpoint`` stores ``content_sha256`` in the header: the SHA-256 of the header (every
other key, as sorted JSON) followed, for each tensor in name order, by its name, dtype, shape
and raw bytes. ``load_checkpoint`` recomputes it, so a flipped bit anywhere — a weight, a
moment, a counter — is refused instead of loading silently. Checkpoints written before the
hash existed have no ``content_sha256`` and load without this check (their tensors are still
type- and finiteness-checked).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from townlet.errors import CheckpointError

HASH_KEY = "content_sha256"
_TENSOR_PREFIXES = ("params/", "adam/exp_avg/", "adam/exp_avg_sq/")


def content_hash(header: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 hex digest of ``header`` (without ``content_sha256``) and ``tensors``."""
    digest = hashlib.sha256()
    fields = {k: v for k, v in header.items() if k != HASH_KEY}
    digest.update(json.dumps(fields, sort_keys=True, allow_nan=False).encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_tensors(source: Path, payload: Mapping[str, Any]) -> None:
    """Every entry but ``header`` is a float32 tensor of a known kind with finite values."""
    for name, value in payload.items():
        if name == "header":
            continue
        if not name.startswith(_TENSOR_PREFIXES):
            raise CheckpointError(f"{source}: unexpected entry {name[:80]!r}")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {name[:80]!r} is not a tensor")
        if value.dtype != torch.float32:
            raise CheckpointError(
                f"{source}: {name[:80]!r} has dtype {value.dtype}, expected torch.float32"
            )
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: {name[:80]!r} holds NaN or Inf values")


def check_hash(source: Path, header: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
    """Refuse a checkpoint whose ``content_sha256`` does not match its contents (absent:
    a checkpoint from before content hashes, accepted)."""
    expected = header.get(HASH_KEY)
    if expected is None:
        return
    tensors = {k: v for k, v in payload.items() if k != "header"}
    if not isinstance(expected, str) or content_hash(header, tensors) != expected:
        raise CheckpointError(
            f"{source}: checkpoint content does not match its content_sha256 "
            "(the file is damaged or was modified)"
        )
