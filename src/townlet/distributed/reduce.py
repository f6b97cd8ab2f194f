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

from townlet.distributed.group import all_reduce_
from townlet.distributed.launch import Collective
from townlet.policy.nn.grads import Grads

ReduceGrads = Callable[[Grads, torch.Tensor, int], tuple[Grads, torch.Tensor, int]]
"""``(grads, means, rows) -> (grads, means, rows)``: the collective a minibatch step calls."""


def keep_local(grads: Grads, means: torch.Tensor, rows: int) -> tuple[Grads, torch.Tensor, int]:
    """The single-process ``reduce_grads``: returns its inputs unchanged."""
    return grads, means, rows


_BufferKey = tuple[int, torch.dtype, torch.device]


def _pack(
    buffers: dict[_BufferKey, torch.Tensor], grads: Grads, means: torch.Tensor, rows: int
) -> torch.Tensor:
    """This rank's contribution in the flat buffer kept for its size: every gradient and the
    means, times ``rows``, then ``rows`` itself. The buffer is allocated once per size and
    written in place (a fresh 1 MB tensor per minibatch costs page faults and copies)."""
    dtype = means.dtype
    parts = [g.reshape(-1).to(dtype) for g in grads.values()] + [means.reshape(-1)]
    size = sum(int(p.numel()) for p in parts) + 1
    key = (size, dtype, means.device)
    flat = buffers.get(key)
    if flat is None:
        flat = buffers[key] = torch.empty(size, dtype=dtype, device=means.device)
    body = flat[:-1]
    torch.cat(parts, out=body)
    # An empty shard's mean loss is NaN; it contributes nothing, not NaN.
    if rows == 0:
        body.zero_()
    else:
        body.mul_(rows)
    flat[-1] = float(rows)
    return flat


def _unflatten(
    flat: torch.Tensor, grads: Grads, means: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, grad in grads.items():
        size = grad.numel()
        out[name] = flat[offset : offset + size].reshape(grad.shape).to(grad.dtype)
        offset += size
    # The means outlive the call (a stats vector is made of them); the gradients do not.
    return out, flat[offset : offset + means.numel()].reshape(means.shape).clone()


def make_reduce_grads(group: Collective) -> ReduceGrads:
    """The ``reduce_grads`` of ``group``: :func:`keep_local` on one process, else one
    ``all_reduce`` per call over a flat buffer (row-weighted gradient and mean averages, global
    row count). Raises :class:`~townlet.distributed.group.PeerFailedError` when a peer is gone,
    and ``ValueError`` when no rank had rows.

    The flat buffer is kept between calls and the reduced gradients are views into it: they
    are valid until the next call of the same ``reduce_grads`` (a minibatch step consumes them
    before it returns); the reduced means are a copy."""
    if group.backend is None:
        return keep_local
    buffers: dict[_BufferKey, torch.Tensor] = {}

    def reduce_grads(
        grads: Grads, means: torch.Tensor, rows: int
    ) -> tuple[Grads, torch.Tensor, int]:
        flat = all_reduce_(group, _pack(buffers, grads, means, rows))
        total = int(flat[-1].item())
        if total <= 0:
            raise ValueError("reduce_grads: no rank had rows in this minibatch")
        body = flat[:-1]
        body.div_(total)
        reduced, reduced_means = _unflatten(body, grads, means)
        return reduced, reduced_means, total

    return reduce_grads
