"""Scaling past one process with ``torch.distributed`` launched by ``torchrun``.

Torch-free here: :mod:`~townlet.distributed.launch` reads where a process sits in a launch
(rank, world size) and derives rank seeds and shards. The collectives themselves live in
:mod:`townlet.distributed.group` (process group, all-reduce, gather) and
:mod:`townlet.distributed.reduce` (the gradient all-reduce a minibatch step takes as its
``reduce_grads`` argument); they import torch. A run with one process never starts a process
group and is exactly the single-process run. See docs/distributed.md.
"""

from __future__ import annotations

from townlet.distributed.launch import (
    DEFAULT_TIMEOUT_S,
    LOCAL,
    RANK_SEED_STREAM,
    Collective,
    LaunchInfo,
    launch_info,
    rank_seed,
    shard_bounds,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "LOCAL",
    "RANK_SEED_STREAM",
    "Collective",
    "LaunchInfo",
    "launch_info",
    "rank_seed",
    "shard_bounds",
]
