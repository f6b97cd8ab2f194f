"""Damaged checkpoints for the malformed-input corpus (used by ``make_corpus.py``; needs torch)."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from townlet.policy.nn.adam import adam_init
from townlet.policy.nn.checkpoint import save_checkpoint
from townlet.policy.nn.checkpoint_hash import content_hash
from townlet.policy.nn.network import init_params
from townlet.policy.nn.spec import NetworkSpec

SPEC = NetworkSpec(feature_dim=3, action_dim=2, hidden_dim=4)


def good_payload() -> dict[str, Any]:
    """The payload of a valid tiny checkpoint (with Adam state and counters)."""
    params = init_params(SPEC, 0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.pt"
        save_checkpoint(
            path,
            spec=SPEC,
            params=params,
            adam_state=adam_init(params),
            counters={"updates": 3},
            extra={"kind": "test"},
        )
        return dict(torch.load(path, weights_only=True))


def _save(payload: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _with_header(change: Callable[[dict[str, Any]], None], rehash: bool = True) -> bytes:
    payload = good_payload()
    header = json.loads(payload["header"])
    change(header)
    if rehash:
        tensors = {k: v for k, v in payload.items() if k != "header"}
        header["content_sha256"] = content_hash(header, tensors)
    payload["header"] = json.dumps(header)
    return _save(payload)


def _with_tensor(change: Callable[[torch.Tensor], torch.Tensor]) -> bytes:
    payload = good_payload()
    name = next(k for k in payload if k.startswith("params/"))
    payload[name] = change(payload[name])
    return _save(payload)


def _flip_bit(tensor: torch.Tensor) -> torch.Tensor:
    bits = tensor.clone().view(torch.int32)
    bits.view(-1)[0] ^= 1 << 3
    return bits.view(torch.float32)


def _nan(tensor: torch.Tensor) -> torch.Tensor:
    out = tensor.clone()
    out.view(-1)[0] = float("nan")
    return out


def checkpoint_cases() -> list[tuple[str, bytes, str]]:
    """``(file name, bytes, expected message fragment)`` for each damaged checkpoint."""
    good = _save(good_payload())
    return [
        ("checkpoint_flipped_bit.pt", _with_tensor(_flip_bit), "does not match its content_sha256"),
        ("checkpoint_nan_weight.pt", _with_tensor(_nan), "holds NaN or Inf values"),
        ("checkpoint_float64.pt", _with_tensor(lambda t: t.double()), "has dtype torch.float64"),
        (
            "checkpoint_counters_list.pt",
            _with_header(lambda h: h.update(counters=[1])),
            "'counters' must be an object",
        ),
        (
            "checkpoint_extra_str.pt",
            _with_header(lambda h: h.update(extra="x")),
            "'extra' must be an object",
        ),
        (
            "checkpoint_adam_steps_str.pt",
            _with_header(lambda h: h.update(adam_steps={k: "1" for k in h["adam_steps"]})),
            "expected an integer",
        ),
        (
            "checkpoint_header_edited.pt",
            _with_header(lambda h: h.update(counters={"updates": 4}), rehash=False),
            "does not match its content_sha256",
        ),
        ("checkpoint_truncated.pt", good[: len(good) // 2], "not a readable checkpoint"),
    ]
