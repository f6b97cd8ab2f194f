"""Which permutation cuts a PPO batch into minibatches, and the action count a run infers —
townlet's seeded order, or the reference's (``PPOConfig.reference_compat``).

Townlet's order: batch ``b`` of epoch ``e`` is permuted by a generator derived from ``(seed,
PERMUTATION_STREAM, e, b)`` — seeded, independent of every other draw, and the same after a
resume. The reference made one ``torch.Generator(device)`` per ``run_ppo`` call and never
seeded it, so it starts from torch's fixed default seed (``67280421310721``; reference-ppo §5)
and every batch of every epoch draws the next ``randperm`` from it. That order is not
"unseeded": it is the same on every run, whatever the run's seed. Under ``reference_compat``
the permutation of draw ``k`` (``k = e · n_batches + b − 1``) is reproduced without keeping a
generator in the (immutable) run state, by replaying the draws before it from a fresh default
generator; a one-entry memo of the last generator state makes consecutive epochs O(1) to
reach, so a run costs what the reference's did. The action count follows the reference too:
``build_batch`` dropped the sidecar's ``action_dim``, so it was always ``max action + 1``
(reference-ppo §2.4) — with those two, ``train_ppo`` reproduces the reference's golden
``ppo_social`` run (``docs/training.md``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import attrs
import torch

from townlet.config import PPOConfig
from townlet.policy.nn.rng import derive_generator
from townlet.policy.replay.batch import ReplayBatch
from townlet.policy.training.strategies.ppo_init import DataShape, data_shape

# Tag of the minibatch-permutation stream in derive_generator(seed, tag, epoch, batch).
PERMUTATION_STREAM = 1

_memo_lock = threading.Lock()
# (device, batch sizes, draws made) -> generator state after those draws.
_memo: dict[tuple[str, tuple[int, ...], int], torch.Tensor] = {}


def minibatch_generator(
    cfg: PPOConfig,
    *,
    seed: int,
    epoch: int,
    batch: int,
    batch_sizes: Sequence[int],
    device: torch.device,
) -> torch.Generator:
    """The generator whose ``randperm`` cuts batch ``batch`` (1-based) of epoch ``epoch``
    (the run's 0-based epoch counter, ``state.log_stream_offset``) into minibatches.
    ``batch_sizes`` are the transition counts of every batch of the epoch, in order."""
    if not cfg.reference_compat:
        return derive_generator(seed, PERMUTATION_STREAM, epoch, batch, device=device)
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
    """:func:`~townlet.policy.training.strategies.ppo_init.data_shape` of ``batches``; under
    ``reference_compat`` the action count is ``max action + 1`` whatever the sidecars declare,
    as the reference's batches (which lost ``action_dim``) gave it."""
    shape = data_shape(batches)
    if cfg.reference_compat:
        return attrs.evolve(shape, action_dim=shape.max_action + 1)
    return shape
