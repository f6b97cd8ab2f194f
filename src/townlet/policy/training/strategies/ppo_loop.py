"""One PPO epoch as a pure fold over replay batches and their minibatches (reference-ppo §6–§7).

``prepare_batches`` turns replay batches into flat tensors once (GAE runs on the *stored* value
predictions, so advantages, returns and every per-batch fact are the same in every epoch);
``ppo_epoch(state, batches, cfg, ...)`` then folds ``ppo_minibatch_step`` over seeded minibatch
permutations and reduces the stats to one telemetry record. Nothing is written to disk here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import attrs
import numpy as np
import torch

from townlet.config import PPOConfig
from townlet.dto.policy import PPOTrainingResult
from townlet.errors import NonFiniteTrainingError
from townlet.policy.nn.rng import derive_generator
from townlet.policy.replay.batch import ReplayBatch
from townlet.policy.training.strategies.ppo_math import (
    PPOMinibatch,
    minibatch_indices,
    prepare_batch,
    select_minibatch,
)
from townlet.policy.training.strategies.ppo_step import (
    MinibatchStats,
    PPOState,
    ppo_minibatch_step,
)
from townlet.policy.training.strategies.ppo_summary import (
    AnnealContext,
    BatchFacts,
    EpochCounters,
    PPODatasetInfo,
    batch_facts,
    summarize_epoch,
)

# Tag of the minibatch-permutation stream in derive_generator(seed, tag, epoch, batch).
PERMUTATION_STREAM = 1


@attrs.frozen(kw_only=True, eq=False)
class PreparedBatches:
    """Replay batches ready for PPO: one flat :class:`PPOMinibatch` per batch (N = B·T rows,
    advantages normalised per batch when configured) and the per-batch facts every epoch
    reports (:class:`BatchFacts`). ``label`` names the dataset in error messages."""

    batches: tuple[PPOMinibatch, ...]
    facts: BatchFacts
    label: str


def _check_batch(data: PPOMinibatch, label: str, index: int) -> float:
    adv, ret = data.advantages, data.returns
    std = adv.std(unbiased=False) if adv.numel() > 1 else torch.zeros((), device=adv.device)
    # One sync for the three checks of §6.3, in the reference's order.
    adv_ok, ret_ok, std_value = torch.stack(
        [torch.isfinite(adv).all().float(), torch.isfinite(ret).all().float(), std.float()]
    ).tolist()
    where = f"(dataset={label}, batch={index})"
    if not adv_ok:
        raise NonFiniteTrainingError(f"PPO advantages contained NaN/inf {where}")
    if not ret_ok:
        raise NonFiniteTrainingError(f"PPO returns contained NaN/inf {where}")
    if not math.isfinite(std_value):
        raise NonFiniteTrainingError(f"PPO advantages produced invalid std {where}")
    return float(std_value)


def prepare_batches(
    batches: Sequence[ReplayBatch],
    cfg: PPOConfig,
    *,
    label: str = "training_dataset",
    device: str | torch.device = "cpu",
) -> PreparedBatches:
    """GAE, advantage normalisation, finite checks and per-batch facts for ``batches`` (§6.1–§6.4,
    §11), done once so that epochs only run minibatch updates.

    Raises :class:`~townlet.errors.NonFiniteTrainingError` (a ``ValueError``) with the reference's
    messages — ``PPO advantages contained NaN/inf (dataset=<label>, batch=<i>)``, then the same
    for returns, then ``PPO advantages produced invalid std (...)``; ``i`` is 1-based.
    """
    prepared, stds, rewards, advantages, conflict = [], [], [], [], []
    for index, batch in enumerate(batches, start=1):
        data = prepare_batch(batch, cfg, device=device)
        stds.append(_check_batch(data, label, index))
        rewards.append(np.asarray(batch.rewards, dtype=np.float32).ravel())
        advantages.append(data.advantages.detach().cpu().numpy())
        conflict.append(batch.conflict_stats())
        prepared.append(data)
    facts = batch_facts(stds, rewards, advantages, conflict, sum(len(d) for d in prepared))
    return PreparedBatches(batches=tuple(prepared), facts=facts, label=label)


def _check_stats(stats: MinibatchStats, label: str, index: int) -> None:
    if not math.isfinite(stats.adv_std):
        raise NonFiniteTrainingError(
            f"PPO mini-batch advantages produced invalid std (dataset={label}, batch={index})"
        )
    if not (math.isfinite(stats.loss_total) and math.isfinite(stats.grad_norm)):
        # Not checked by the reference; a diverged network would otherwise train on NaN.
        raise NonFiniteTrainingError(
            f"PPO loss or gradient norm became NaN/inf (dataset={label}, batch={index})"
        )


def ppo_epoch_updates(
    state: PPOState, prepared: PreparedBatches, cfg: PPOConfig, *, value_only: bool = False
) -> tuple[PPOState, list[MinibatchStats]]:
    """Fold :func:`ppo_minibatch_step` over every minibatch of every batch, once (§6.4).

    Batch ``b`` (1-based) is cut by a permutation from
    ``derive_generator(state.seed, PERMUTATION_STREAM, state.log_stream_offset, b)``: seeded,
    and different in every epoch of a continued run. Counters are not advanced here.
    """
    stats: list[MinibatchStats] = []
    for index, data in enumerate(prepared.batches, start=1):
        generator = derive_generator(
            state.seed,
            PERMUTATION_STREAM,
            state.log_stream_offset,
            index,
            device=data.actions.device,
        )
        for indices in minibatch_indices(len(data), cfg, generator):
            # Updates after the fold's first donate the state the fold itself made (no copy).
            state, step_stats = ppo_minibatch_step(
                state,
                select_minibatch(data, indices),
                cfg,
                value_only=value_only,
                donate=bool(stats),
            )
            _check_stats(step_stats, prepared.label, index)
            stats.append(step_stats)
    return state, stats


def ppo_epoch(
    state: PPOState,
    batches: PreparedBatches | Sequence[ReplayBatch],
    cfg: PPOConfig,
    *,
    epoch_index: int,
    dataset_info: PPODatasetInfo,
    anneal_context: AnnealContext | None = None,
    value_only: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[PPOState, PPOTrainingResult]:
    """One PPO epoch: ``(state, batches) -> (state', telemetry record)``; inputs unchanged.

    ``batches`` are :func:`prepare_batches` output (cheapest: prepare once per run) or raw
    replay batches (prepared here, on the device of ``state.params``). ``epoch_index`` is the
    0-based index within the current call (the record's ``epoch`` is ``epoch_index + 1``).
    ``state.steps`` grows by the epoch's transitions and ``state.log_stream_offset`` by one; the
    record reports them after the increment and ``cycle_id = max(state.cycle_id, 0)`` (§12).
    ``value_only`` trains only the value head (critic warm-up; ``critic_warmup`` is reported).
    ``clock`` times ``epoch_duration_sec`` (the only nondeterministic field; pass a constant
    clock for bit-identical records).

    Raises :class:`~townlet.errors.NonFiniteTrainingError` (a ``ValueError`` and a
    ``TrainingFailedError``) for NaN/Inf advantages, returns, stds or losses, naming the dataset
    label and the 1-based batch index.
    """
    start = clock()
    if not isinstance(batches, PreparedBatches):
        device = next(iter(state.params.values())).device
        batches = prepare_batches(batches, cfg, label=dataset_info.label, device=device)
    state, stats = ppo_epoch_updates(state, batches, cfg, value_only=value_only)
    transitions = sum(s.transitions for s in stats)
    state = attrs.evolve(
        state,
        steps=state.steps + transitions,
        log_stream_offset=state.log_stream_offset + 1,
    )
    counters = EpochCounters(
        epoch=epoch_index + 1,
        steps=state.steps,
        log_stream_offset=state.log_stream_offset,
        cycle_id=max(state.cycle_id, 0),
    )
    record = summarize_epoch(
        stats,
        batches.facts,
        dataset_info,
        cfg,
        counters,
        duration_sec=clock() - start,
        anneal=anneal_context,
        critic_warmup=value_only,
    )
    return state, record
