"""Whole-state PPO checkpoints: everything a :class:`PPOState` holds, so that a run continues
exactly (``N`` updates, save, load, ``N`` more equals ``2N`` uninterrupted updates)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from townlet.errors import CheckpointError
from townlet.policy.nn.adam import adam_init
from townlet.policy.nn.checkpoint import load_checkpoint, save_checkpoint
from townlet.policy.training.strategies.ppo.step import PPOState

_COUNTERS = ("seed", "updates", "steps", "log_stream_offset", "cycle_id")


def save_ppo_state(
    path: str | os.PathLike[str], state: PPOState, *, extra: Mapping[str, Any] | None = None
) -> Path:
    """Checkpoint everything ``state`` holds — spec, parameters, Adam moments and the counters
    ``seed``, ``updates``, ``steps``, ``log_stream_offset``, ``cycle_id`` — atomically.
    :func:`load_ppo_state` gives back a state that continues the run exactly."""
    counters = {name: int(getattr(state, name)) for name in _COUNTERS}
    return save_checkpoint(
        path,
        spec=state.spec,
        params=state.params,
        adam_state=state.adam_state,
        counters=counters,
        extra={"kind": "ppo", **(extra or {})},
    )


def load_ppo_state(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> PPOState:
    """The :class:`PPOState` saved by :func:`save_ppo_state`. A checkpoint without Adam moments
    or counters (e.g. from BC) starts them fresh (seed 0 unless saved). Raises
    ``CheckpointError`` for an unreadable file or bad counters."""
    checkpoint = load_checkpoint(path, map_location=map_location)
    counters = dict(checkpoint.counters)
    try:
        values = {name: int(counters[name]) for name in _COUNTERS if name in counters}
        values.setdefault("seed", 0)
        adam = checkpoint.adam_state or adam_init(checkpoint.params)
        return PPOState(spec=checkpoint.spec, params=checkpoint.params, adam_state=adam, **values)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid PPO counters {counters}: {exc}") from exc
