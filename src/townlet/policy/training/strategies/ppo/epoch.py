"""One PPO epoch for replay and online data: ``ppo_epoch(state, data, cfg) -> (state, stats)``.

For each batch of :class:`EpochData`: permute its rows with a generator derived from the run
seed, the data's stream and the batch's counters, cut the permuted batch into contiguous
minibatches (views, no gather per minibatch), and fold
:func:`~townlet.policy.training.strategies.ppo.step.ppo_minibatch_update` over them. With
``EpochData.demos`` every policy update also gets as many expert demonstration rows as its
minibatch has, read in order from a permutation of the demonstrations (``Stream.PPO_DEMOS``
at the batch's counters), for the BC term. The stats
vectors of all minibatches are read back once per epoch (one device sync), then checked once
for divergence. Replay PPO runs one epoch per pass over its batches; online PPO runs one epoch
per update whose batches are the ``cfg.num_epochs`` passes over the collected rollout.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import attrs
import torch

from townlet._records import map_fields
from townlet._summary import record_dict, short_repr
from townlet.config import PPOConfig
from townlet.distributed.parallel import (
    SINGLE,
    DataParallel,
    global_rows,
    rank_key,
    take_rank_rows,
)
from townlet.errors import NonFiniteTrainingError
from townlet.policy.nn.rng import stream_generator
from townlet.policy.streams import Stream
from townlet.policy.training.strategies.minibatch_order import batch_generator
from townlet.policy.training.strategies.ppo.functional import (
    DemoRows,
    PPOMinibatch,
    minibatch_size,
)
from townlet.policy.training.strategies.ppo.step import (
    STATS_FIELDS,
    MinibatchStats,
    PPOState,
    ppo_minibatch_update,
    stats_from_values,
)

MinibatchUpdate = Callable[..., tuple[PPOState, torch.Tensor]]
"""``update(state, minibatch, cfg, *, value_only, reduce_grads, donate) -> (state, stats)``:
``ppo_minibatch_update`` or its compiled form (``ppo.compiled.make_ppo_update``)."""

# The entries of a stats vector that a diverged update turns non-finite first.
_DIVERGENCE_COLUMNS = tuple(STATS_FIELDS.index(k) for k in ("adv_std", "loss_total", "grad_norm"))


@attrs.frozen(kw_only=True, eq=False)
class EpochData:
    """What one epoch trains on: flat ``batches``, each shuffled by
    ``stream_generator(state.seed, stream, *keys[i])``; ``label`` names the data in error
    messages (e.g. ``"dataset=d"``); ``value_only`` trains only the value head; ``demos``: expert
    demonstration rows for the BC term of the policy updates (None: it clones the batch's own
    actions)."""

    __repr__ = short_repr
    to_dict = record_dict

    batches: tuple[PPOMinibatch, ...]
    keys: tuple[tuple[int, ...], ...]
    stream: Stream
    label: str
    value_only: bool = False
    reference_order: bool = False  # the reference's minibatch order (minibatch_order.py)
    demos: DemoRows | None = None

    def __attrs_post_init__(self) -> None:
        if len(self.batches) != len(self.keys):
            raise ValueError(f"{len(self.batches)} batches need as many keys, got {self.keys}")


def shuffle_rows(data: PPOMinibatch, generator: torch.Generator) -> PPOMinibatch:
    """``data``'s rows in a permutation drawn from ``generator`` (new tensors)."""
    perm = torch.randperm(len(data), generator=generator, device=generator.device)
    return map_fields(operator.itemgetter(perm), data)


def split_rows(data: PPOMinibatch, size: int) -> list[PPOMinibatch]:
    """``data`` cut into consecutive minibatches of ``size`` rows (views; the last may be
    short)."""
    n = len(data)
    return [map_fields(operator.itemgetter(slice(i, i + size)), data) for i in range(0, n, size)]


def demo_slices(
    demos: DemoRows, seed: int, key: tuple[int, ...], sizes: list[int]
) -> list[DemoRows]:
    """The demonstration rows of each of a batch's minibatches (``sizes`` rows each): a
    permutation of ``demos`` drawn from ``Stream.PPO_DEMOS`` at ``key``, read in consecutive
    slices that wrap around when the minibatches need more rows than there are."""
    actions = demos[2]
    generator = stream_generator(seed, Stream.PPO_DEMOS, *key, device=actions.device)
    perm = torch.randperm(len(actions), generator=generator, device=actions.device)
    slices, start = [], 0
    for size in sizes:
        rows = perm[torch.arange(start, start + size, device=actions.device) % len(perm)]
        maps, features, _ = demos
        slices.append((None if maps is None else maps[rows], features[rows], actions[rows]))
        start += size
    return slices


def check_divergence(rows: list[list[float]], batch_of: list[int], label: str) -> None:
    """Raise :class:`NonFiniteTrainingError` naming the first minibatch (its batch and its
    index within the batch, 1-based) whose advantage std, loss or gradient norm is NaN/Inf."""
    for row, batch, count in zip(rows, batch_of, _counts(batch_of), strict=True):
        if not all(math.isfinite(row[i]) for i in _DIVERGENCE_COLUMNS):
            raise NonFiniteTrainingError(
                "PPO loss, gradient norm or advantage std became NaN/inf "
                f"({label}, batch={batch}, minibatch={count})"
            )


def _counts(batch_of: list[int]) -> list[int]:
    counts, previous, n = [], None, 0
    for batch in batch_of:
        n = n + 1 if batch == previous else 1
        counts.append(n)
        previous = batch
    return counts


def ppo_epoch(
    state: PPOState,
    data: EpochData,
    cfg: PPOConfig,
    *,
    parallel: DataParallel = SINGLE,
    minibatch_update: MinibatchUpdate = ppo_minibatch_update,
) -> tuple[PPOState, tuple[MinibatchStats, ...]]:
    """Fold the minibatch update over every minibatch of every batch of ``data``, once.

    Returns the new state (``updates`` advanced; other counters are the caller's) and every
    minibatch's stats in order; ``state`` and ``data`` are unchanged. Raises
    :class:`NonFiniteTrainingError` when an update diverged (:func:`check_divergence`).
    ``parallel`` spreads the epoch over ranks (:mod:`townlet.distributed.parallel`): each rank
    computes its rows of every global minibatch and the stats are the global minibatches'.
    ``minibatch_update`` is the eager update or the run's compiled one (same results).
    """
    vectors: list[torch.Tensor] = []
    sizes: list[int] = []
    batch_of: list[int] = []
    extra = rank_key(parallel)
    if extra:  # rank r > 0 training on its own data: its own permutations
        data = attrs.evolve(data, keys=tuple((*key, *extra) for key in data.keys))
    for index, batch in enumerate(data.batches, start=1):
        generator = batch_generator(state.seed, data, index - 1, device=batch.actions.device)
        minibatches = split_rows(shuffle_rows(batch, generator), minibatch_size(len(batch), cfg))
        demos = _epoch_demos(state.seed, data, index - 1, minibatches)
        for minibatch, demo in zip(minibatches, demos, strict=True):
            # Updates after the fold's first donate the state the fold itself made (no copy).
            demo_kw = {} if demo is None else {"demo": demo}
            state, values = minibatch_update(
                state,
                take_rank_rows(parallel, minibatch),
                cfg,
                value_only=data.value_only,
                reduce_grads=parallel.reduce_grads,
                donate=bool(vectors),
                **demo_kw,
            )
            vectors.append(values)
            sizes.append(global_rows(parallel, len(minibatch)))
            batch_of.append(index)
    rows: list[list[float]] = torch.stack(vectors).tolist() if vectors else []
    check_divergence(rows, batch_of, data.label)
    return state, tuple(stats_from_values(row, n) for row, n in zip(rows, sizes, strict=True))


def _epoch_demos(
    seed: int, data: EpochData, index: int, minibatches: list[PPOMinibatch]
) -> list[DemoRows | None]:
    # Value-only epochs have no policy term to regularise: no demonstration rows.
    if data.demos is None or data.value_only:
        return [None] * len(minibatches)
    sizes = [len(minibatch) for minibatch in minibatches]
    return list(demo_slices(data.demos, seed, data.keys[index], sizes))
