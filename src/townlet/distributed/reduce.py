"""The gradient all-reduce a minibatch step takes as its ``reduce_grads`` argument.

A step computes the gradients of its *own* rows' mean loss, plus a vector of per-row means it
reports (losses, accuracy, …), then calls ``reduce_grads(grads, means, rows)``. On one process
that is :func:`keep_local` (the identity); on N processes :func:`make_reduce_grads` packs every
gradient, the means and the row count into one flat buffer, runs one ``all_reduce`` and returns
the row-weighted averages and the global row count. Weighting by rows makes the result the
gradient of the mean loss over the union of the ranks' rows — the update a single process
would make on that global minibatch — also when the ranks hold different row counts (a rank with
no rows adds nothing).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from townlet.distributed.group import peer_failures
from townlet.distributed.launch import Collective
from townlet.policy.nn.grads import Grads

ReduceGrads = Callable[[Grads, torch.Tensor, int], tuple[Grads, torch.Tensor, int]]
"""``(grads, means, rows) -> (grads, means, rows)``: the collective a minibatch step calls."""


def keep_local(grads: Grads, means: torch.Tensor, rows: int) -> tuple[Grads, torch.Tensor, int]:
    """The single-process ``reduce_grads``: returns its inputs unchanged."""
    return grads, means, rows


def _flat_contribution(grads: Grads, means: torch.Tensor, rows: int) -> torch.Tensor:
    dtype = means.dtype
    parts = [g.reshape(-1).to(dtype) for g in grads.values()] + [means.reshape(-1)]
    flat = torch.cat(parts)
    # An empty shard's mean loss is NaN; it contributes nothing, not NaN.
    flat = torch.zeros_like(flat) if rows == 0 else flat * rows
    return torch.cat([flat, torch.tensor([float(rows)], dtype=dtype, device=flat.device)])


def _unflatten(
    flat: torch.Tensor, grads: Grads, means: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, grad in grads.items():
        size = grad.numel()
        out[name] = flat[offset : offset + size].reshape(grad.shape).to(grad.dtype)
        offset += size
    return out, flat[offset : offset + means.numel()].reshape(means.shape)


def make_reduce_grads(group: Collective) -> ReduceGrads:
    """The ``reduce_grads`` of ``group``: :func:`keep_local` on one process, else one
    ``all_reduce`` per call over a flat buffer (row-weighted gradient and mean averages, global
    row count). Raises :class:`~townlet.distributed.group.PeerFailedError` when a peer is gone,
    and ``ValueError`` when no rank had rows."""
    if group.backend is None:
        return keep_local

    def reduce_grads(
        grads: Grads, means: torch.Tensor, rows: int
    ) -> tuple[Grads, torch.Tensor, int]:
        flat = _flat_contribution(grads, means, rows)
        with peer_failures(group):
            dist.all_reduce(flat)
        total = int(flat[-1].item())
        if total <= 0:
            raise ValueError("reduce_grads: no rank had rows in this minibatch")
        reduced, reduced_means = _unflatten(flat[:-1] / total, grads, means)
        return reduced, reduced_means, total

    return reduce_grads
