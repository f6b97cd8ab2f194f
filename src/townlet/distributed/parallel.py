"""How an epoch spreads its minibatches over the ranks: :class:`DataParallel`.

Two kinds of data, two rules (docs/distributed.md):

* **Shared data** (a replay dataset, BC demonstrations) — every rank holds the same batches and
  draws the same permutations from the run seed; each rank takes its contiguous share of every
  minibatch (:func:`rank_rows`) and the gradient all-reduce makes the update the global
  minibatch's. The run is the one-process run, its work split N ways.
* **Own data** (rollouts each rank collects on its own environments) — each rank cuts its own
  batch into minibatches with its own permutation (:func:`rank_key`); the global minibatch is
  the union of the ranks' minibatches, N times the configured size. The ranks must hold equal
  row counts (:func:`check_equal_rows`) so that they run the same number of updates.

:data:`SINGLE` is the one process: every helper is then the identity.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

from townlet.distributed.group import all_reduce_max
from townlet.distributed.launch import LOCAL, RANK_SEED_STREAM, Collective, shard_bounds
from townlet.distributed.reduce import ReduceGrads, keep_local, make_reduce_grads
from townlet.errors import TrainingFailedError

R = TypeVar("R")


@attrs.frozen(kw_only=True)
class DataParallel:
    """The ``group`` an epoch runs in, its ``reduce_grads`` collective, and whether the ranks
    hold the same data (``shared_data``: split every minibatch) or their own (own minibatches)."""

    group: Collective = LOCAL
    reduce_grads: ReduceGrads = keep_local
    shared_data: bool = True

    @property
    def world_size(self) -> int:
        """The number of ranks."""
        return self.group.world_size


SINGLE = DataParallel()
"""One process: whole minibatches, no collective."""


def make_data_parallel(group: Collective, *, shared_data: bool) -> DataParallel:
    """The :class:`DataParallel` of ``group`` (:data:`SINGLE`'s behaviour on one process)."""
    return DataParallel(group=group, reduce_grads=make_reduce_grads(group), shared_data=shared_data)


def rank_rows(parallel: DataParallel, n: int) -> slice:
    """The rows of an ``n``-row minibatch this rank computes: its contiguous share with shared
    data, all of them with own data (and on one process)."""
    if not parallel.shared_data or parallel.world_size == 1:
        return slice(0, n)
    start, stop = shard_bounds(n, parallel.group.rank, parallel.world_size)
    return slice(start, stop)


def take_rank_rows(parallel: DataParallel, record: R) -> R:
    """``record`` (an attrs record of row tensors, or a tuple of them; None fields stay None)
    cut to :func:`rank_rows` — the record itself when that is every row."""
    n = _rows_of(record)
    rows = rank_rows(parallel, n)
    if rows == slice(0, n):
        return record
    cut: Any
    if isinstance(record, tuple):
        cut = tuple(None if v is None else v[rows] for v in record)
    else:
        fields = {f.name: getattr(record, f.name) for f in attrs.fields(type(record))}  # type: ignore[arg-type]
        cut = attrs.evolve(record, **{k: None if v is None else v[rows] for k, v in fields.items()})  # type: ignore[misc]
    result: R = cut
    return result


def _rows_of(record: Any) -> int:
    values = record if isinstance(record, tuple) else attrs.astuple(record, recurse=False)
    return next(int(v.shape[0]) for v in values if v is not None and hasattr(v, "shape"))


def global_rows(parallel: DataParallel, n: int) -> int:
    """The global minibatch's rows when this rank's minibatch (before :func:`rank_rows`) has
    ``n``: ``n`` with shared data, ``n · world_size`` with own data (equal row counts)."""
    return n if parallel.shared_data else n * parallel.world_size


def rank_key(parallel: DataParallel) -> tuple[int, ...]:
    """Counters appended to a permutation stream's key: none with shared data or on rank 0
    (the one-process streams), ``(RANK_SEED_STREAM, rank)`` for rank > 0's own data."""
    if parallel.shared_data or parallel.group.rank == 0:
        return ()
    return (RANK_SEED_STREAM, parallel.group.rank)


def check_equal_rows(parallel: DataParallel, n: int, *, what: str) -> None:
    """Raise :class:`~townlet.errors.TrainingFailedError` on every rank unless all ranks hold
    ``n`` rows of own data (else they would run different numbers of updates and hang)."""
    if parallel.shared_data or parallel.world_size == 1:
        return
    # One tensor all-reduce (the largest n and the negated smallest), not an object gather.
    largest, negated_smallest = all_reduce_max(parallel.group, [float(n), float(-n)])
    if largest != -negated_smallest:
        raise TrainingFailedError(
            f"{what}: the ranks hold different row counts (from {round(-negated_smallest)} "
            f"to {round(largest)}; this rank {n}); every rank must collect the same number of "
            "steps (same --num-envs/--agents and ticks on every rank)"
        )
