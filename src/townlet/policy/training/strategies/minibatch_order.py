"""Which permutation cuts a PPO batch into minibatches, and the action count a run infers —
townlet's seeded order, or the reference's (``PPOConfig.reference_compat``).

Townlet's order: batch ``b`` of epoch ``e`` is permuted by
``stream_generator(seed, Stream.PPO_PERMUTATION, e, b)`` — seeded, independent of every other
draw, and the same after a resume. The reference made one ``torch.Generator(device)`` per
``run_ppo`` call and never seeded it, so it starts from torch's fixed default seed
(``67280421310721``; reference-ppo §5) and every batch of every epoch draws the next
``randperm`` from it. That order is not "unseeded": it is the same on every run, whatever the
run's seed. Under ``reference_compat`` the permutation of draw ``k`` (``k = e · n_batches +
b − 1``) is reproduced without keeping a generator in the (immutable) run state, by replaying
the draws before it from a fresh default generator; a one-entry memo of the last generator
state makes consecutive epochs O(1) to reach, so a run costs what the reference's did. The
action count follows the reference too: ``build_batch`` dropped the sidecar's ``action_dim``,
so it was always ``max action + 1`` (reference-ppo §2.4) — with those two, ``train_ppo``
reproduces the reference's golden ``ppo_social`` run (``docs/training.md``).

The hook in the epoch fold is one call: :func:`batch_generator` gives the generator of each
batch of an :class:`~townlet.policy.training.strategies.ppo.epoch.EpochData`, whose
``reference_order`` flag the replay driver sets from ``cfg.reference_compat``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import torch

from townlet.config import PPOConfig
from townlet.policy.nn.rng import stream_generator
from townlet.policy.replay.batch import ReplayBatch
from townlet.policy.streams import Stream
from townlet.policy.training.strategies.ppo.start import DataShape, data_shape

if TYPE_CHECKING:
    from townlet.policy.training.strategies.ppo.epoch import EpochData

_memo_lock = threading.Lock()
# (device, batch sizes, draws made) -> generator state after those draws.
_memo: dict[tuple[str, tuple[int, ...], int], torch.Tensor] = {}


def batch_generator(
    seed: int, data: EpochData, index: int, *, device: torch.device | str
) -> torch.Generator:
    """The generator that permutes batch ``index`` (0-based) of ``data``: its stream at
    ``data.keys[index]``, or with ``data.reference_order`` the reference's generator at draw
    ``epoch · n_batches + index`` (``epoch = data.keys[index][0]``)."""
    key = data.keys[index]
    if not data.reference_order:
        return stream_generator(seed, data.stream, *key, device=device)
    sizes = tuple(len(batch) for batch in data.batches)
    return reference_generator(key[0] * len(sizes) + index, sizes, device=device)


def minibatch_generator(
    cfg: PPOConfig,
    *,
    seed: int,
    epoch: int,
    batch: int,
    batch_sizes: Sequence[int],
    device: torch.device | str,
) -> torch.Generator:
    """The generator of batch ``batch`` (1-based) of replay epoch ``epoch`` (the run's
    ``log_stream_offset``) under ``cfg``; ``batch_sizes`` are the transition counts of every
    batch of the epoch, in order."""
    if not cfg.reference_compat:
        return stream_generator(seed, Stream.PPO_PERMUTATION, epoch, batch, device=device)
    draw = epoch * len(batch_sizes) + batch - 1
    return reference_generator(draw, tuple(int(n) for n in batch_sizes), device=device)


def reference_generator(
    draw: int, batch_sizes: tuple[int, ...], *, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A default-seeded ``torch.Generator`` advanced past ``draw`` earlier ``randperm`` draws
    of the cycling ``batch_sizes`` — the reference's generator just before draw ``draw``."""
    device = torch.device(device)
    generator = torch.Generator(device=device)
    start = 0
    with _memo_lock:
        for (where, sizes, made), state in _memo.items():
            if where == str(device) and sizes == batch_sizes and made <= draw:
                generator.set_state(state.clone())
                start = made
    for k in range(start, draw):
        torch.randperm(batch_sizes[k % len(batch_sizes)], generator=generator, device=device)
    with _memo_lock:
        _memo.clear()
        _memo[(str(device), batch_sizes, draw)] = generator.get_state()
    return generator


def run_data_shape(batches: Sequence[ReplayBatch], cfg: PPOConfig) -> DataShape:
    """:func:`~townlet.policy.training.strategies.ppo.start.data_shape` of ``batches``; under
    ``reference_compat`` the action count is ``max action + 1`` whatever the sidecars declare,
    as the reference's batches (which lost ``action_dim``) gave it."""
    shape = data_shape(batches)
    if cfg.reference_compat:
        return attrs.evolve(shape, action_dim=shape.max_action + 1)
    return shape
