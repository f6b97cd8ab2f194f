"""Shape-signature bucketing and the batch plan of an epoch (reference §8.1), as pure functions.

Samples batch together only when their array shapes are equal. Buckets are ordered by sorting
their signatures (so shorter trajectories come first) and keep entry order inside; with
shuffling, each bucket is permuted by a generator derived from ``(seed, epoch)``, so any epoch's
order can be recomputed without replaying the earlier ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from townlet.errors import ConfigError
from townlet.policy.replay.sample import Signature

Bucket = tuple[int, ...]
BatchPlan = tuple[tuple[int, ...], ...]


def group_by_signature(signatures: Sequence[Signature]) -> tuple[Bucket, ...]:
    """Indices grouped by equal signature; groups in sorted-signature order, indices in
    input order."""
    groups: dict[Signature, list[int]] = {}
    for index, signature in enumerate(signatures):
        groups.setdefault(signature, []).append(index)
    return tuple(tuple(groups[signature]) for signature in sorted(groups))


def count_batches(buckets: Sequence[Bucket], batch_size: int, *, drop_last: bool) -> int:
    """Number of batches: Σ ceil(n / B) over buckets, or Σ floor(n / B) with ``drop_last``.

    Raises ``ConfigError`` when ``batch_size <= 0``.
    """
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    if drop_last:
        return sum(len(bucket) // batch_size for bucket in buckets)
    return sum(-(-len(bucket) // batch_size) for bucket in buckets)


def epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    """The PCG64 generator for ``epoch`` of a run seeded with ``seed`` (both ``>= 0``).

    Raises ``ConfigError`` for a negative seed or epoch.
    """
    if seed < 0 or epoch < 0:
        raise ConfigError(f"seed and epoch must be >= 0, got seed={seed} epoch={epoch}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))


def plan_batches(
    buckets: Sequence[Bucket],
    *,
    batch_size: int,
    drop_last: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
) -> BatchPlan:
    """The sample indices of each batch of ``epoch``, in iteration order.

    Buckets are walked in order (bucket order is never shuffled); with ``shuffle`` each
    bucket's indices are permuted by :func:`epoch_generator`; each bucket is cut into slices of
    ``batch_size``, the short tail dropped when ``drop_last``.
    """
    count_batches(buckets, batch_size, drop_last=drop_last)  # validates batch_size
    rng = epoch_generator(seed, epoch) if shuffle else None
    plan: list[tuple[int, ...]] = []
    for bucket in buckets:
        order = list(bucket)
        if rng is not None:
            order = [order[i] for i in rng.permutation(len(order))]
        for start in range(0, len(order), batch_size):
            chunk = tuple(order[start : start + batch_size])
            if drop_last and len(chunk) < batch_size:
                continue
            plan.append(chunk)
    return tuple(plan)
