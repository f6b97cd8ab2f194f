"""One PPO epoch as a pure fold over replay batches and their minibatches (reference-ppo §6–§7).

``prepare_batches`` turns replay batches into flat tensors once (GAE runs on the *stored* value
predictions, so advantages, returns and every per-batch fact are the same in every epoch);
``replay_epoch(state, batches, cfg, ...)`` then runs
:func:`~townlet.policy.training.strategies.ppo.epoch.ppo_epoch` over them and reduces the stats
to one telemetry record. Nothing is written to disk here.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
import torch

from townlet._summary import record_dict, short_repr
from townlet.config import PPOConfig
from townlet.distributed.parallel import SINGLE, DataParallel
from townlet.dto.policy import PPOTrainingResult
from townlet.errors import NonFiniteTrainingError
from townlet.policy.replay.batch import ReplayBatch
from townlet.policy.streams import Stream
from townlet.policy.training.fold import Sink, run_fold
from townlet.policy.training.strategies.ppo.compiled import make_ppo_update
from townlet.policy.training.strategies.ppo.epoch import EpochData, MinibatchUpdate
from townlet.policy.training.strategies.ppo.epoch import ppo_epoch as fold_epoch
from townlet.policy.training.strategies.ppo.functional import (
    DemoRows,
    PPOMinibatch,
    prepare_batch,
)
from townlet.policy.training.strategies.ppo.step import (
    MinibatchStats,
    PPOState,
    ppo_minibatch_update,
)
from townlet.policy.training.strategies.ppo.summary import (
    AnnealContext,
    BatchFacts,
    EpochCounters,
    PPODatasetInfo,
    batch_facts,
    summarize_epoch,
)
from townlet.policy.training.strategies.ppo.train import TrainResult

# Deprecated name of Stream.PPO_PERMUTATION's tag.
PERMUTATION_STREAM = Stream.PPO_PERMUTATION.tag


@attrs.frozen(kw_only=True, eq=False)
class PreparedBatches:
    """Replay batches ready for PPO: one flat :class:`PPOMinibatch` per batch (N = B·T rows,
    advantages normalised per batch when configured) and the per-batch facts every epoch
    reports (:class:`BatchFacts`). ``label`` names the dataset in error messages."""

    __repr__ = short_repr
    to_dict = record_dict

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


def epoch_data(
    prepared: PreparedBatches,
    epoch: int,
    *,
    value_only: bool = False,
    reference_order: bool = False,
    demos: DemoRows | None = None,
) -> EpochData:
    """The :class:`EpochData` of replay epoch ``epoch`` (the run's ``log_stream_offset``):
    batch ``b`` (1-based) is shuffled by ``Stream.PPO_PERMUTATION`` at ``(epoch, b)``, or with
    ``reference_order`` in the reference's order (``minibatch_order``); ``demos`` are the
    expert rows of the BC term (:class:`EpochData`)."""
    keys = tuple((epoch, b) for b in range(1, len(prepared.batches) + 1))
    return EpochData(
        batches=prepared.batches,
        keys=keys,
        stream=Stream.PPO_PERMUTATION,
        label=f"dataset={prepared.label}",
        value_only=value_only,
        reference_order=reference_order,
        demos=demos,
    )


def ppo_epoch_updates(
    state: PPOState,
    prepared: PreparedBatches,
    cfg: PPOConfig,
    *,
    value_only: bool = False,
    parallel: DataParallel = SINGLE,
    minibatch_update: MinibatchUpdate = ppo_minibatch_update,
    demos: DemoRows | None = None,
) -> tuple[PPOState, list[MinibatchStats]]:
    """:func:`~townlet.policy.training.strategies.ppo.epoch.ppo_epoch` over ``prepared`` at
    epoch ``state.log_stream_offset`` (seeded, and different in every epoch of a continued run).
    Counters other than ``updates`` are not advanced here."""
    data = epoch_data(
        prepared,
        state.log_stream_offset,
        value_only=value_only,
        reference_order=cfg.reference_compat,
        demos=demos,
    )
    state, stats = fold_epoch(
        state, data, cfg, parallel=parallel, minibatch_update=minibatch_update
    )
    return state, list(stats)


def replay_epoch(
    state: PPOState,
    batches: PreparedBatches | Sequence[ReplayBatch],
    cfg: PPOConfig,
    *,
    epoch_index: int,
    dataset_info: PPODatasetInfo,
    anneal_context: AnnealContext | None = None,
    value_only: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    parallel: DataParallel = SINGLE,
    minibatch_update: MinibatchUpdate = ppo_minibatch_update,
    demos: DemoRows | None = None,
) -> tuple[PPOState, PPOTrainingResult]:
    """One replay PPO epoch: ``(state, batches) -> (state', telemetry record)``; inputs unchanged.

    ``batches`` are :func:`prepare_batches` output (cheapest: prepare once per run) or raw
    replay batches (prepared here, on the device of ``state.params``). ``epoch_index`` is the
    0-based index within the current call (the record's ``epoch`` is ``epoch_index + 1``).
    ``state.steps`` grows by the epoch's transitions and ``state.log_stream_offset`` by one; the
    record reports them after the increment and ``cycle_id = max(state.cycle_id, 0)`` (§12).
    ``value_only`` trains only the value head (critic warm-up; ``critic_warmup`` is reported).
    ``clock`` times ``epoch_duration_sec`` (the only nondeterministic field; pass a constant
    clock for bit-identical records). ``parallel``: every rank holds the same batches and
    computes its share of every minibatch (:mod:`townlet.distributed.parallel`). ``demos``:
    expert demonstration rows the BC term clones (``bc_coef``; see :class:`EpochData`).

    Raises :class:`~townlet.errors.NonFiniteTrainingError` (a ``ValueError`` and a
    ``TrainingFailedError``) for NaN/Inf advantages, returns, stds or losses, naming the dataset
    label and the 1-based batch index.
    """
    start = clock()
    if not isinstance(batches, PreparedBatches):
        device = next(iter(state.params.values())).device
        batches = prepare_batches(batches, cfg, label=dataset_info.label, device=device)
    state, stats = ppo_epoch_updates(
        state,
        batches,
        cfg,
        value_only=value_only,
        parallel=parallel,
        minibatch_update=minibatch_update,
        demos=demos,
    )
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


def _no_clock() -> float:
    return 0.0


def run_cycle(
    state: PPOState, info: PPODatasetInfo, anneal: AnnealContext | None
) -> tuple[PPOState, int]:
    """The state the epochs run with (its ``cycle_id`` is what they report, floored at 0) and
    the ``cycle_id`` the run leaves behind (§12, legacy rule): a rollout/mixed run advances the
    cycle; a replay run reports ``max(c, 0)`` and stores nothing; an anneal stage reports its
    own cycle (+1 for in-memory data) and stores nothing."""
    in_memory = info.data_mode != "replay"
    if anneal is not None:
        return attrs.evolve(state, cycle_id=anneal.cycle + int(in_memory)), state.cycle_id
    if in_memory:
        return attrs.evolve(state, cycle_id=state.cycle_id + 1), state.cycle_id + 1
    return state, state.cycle_id


def fit_ppo(
    state: PPOState,
    prepared: PreparedBatches,
    info: PPODatasetInfo,
    cfg: PPOConfig,
    *,
    epochs: int,
    value_only_epochs: int = 0,
    anneal_context: AnnealContext | None = None,
    sinks: Sequence[Sink] = (),
    clock: Callable[[], float] = _no_clock,
    parallel: DataParallel = SINGLE,
    start: int = 0,
    demos: DemoRows | None = None,
) -> TrainResult:
    """``epochs`` replay epochs (:func:`replay_epoch`) folded by
    :func:`~townlet.policy.training.fold.run_fold`, each epoch's record handed to ``sinks``;
    the first ``value_only_epochs`` train only the value head. Pure apart from ``sinks`` and
    ``clock`` (which only times durations; 0 by default). ``start`` epochs already ran and
    ``state`` is the fold's state after them (a resumed run: its cycle is already set). The
    minibatch update is ``make_ppo_update(cfg.compile)``, built once for all the epochs, or the
    eager update when ``demos`` (expert rows for the BC term, see :class:`EpochData`) are given:
    the compiled programs take the PPO minibatch alone."""
    if start:
        cycle_after = state.cycle_id
    else:
        state, cycle_after = run_cycle(state, info, anneal_context)
    minibatch_update = make_ppo_update(cfg.compile) if demos is None else ppo_minibatch_update
    started = clock()

    def step(current: PPOState, index: int) -> tuple[PPOState, PPOTrainingResult]:
        return replay_epoch(
            current,
            prepared,
            cfg,
            epoch_index=index,
            dataset_info=info,
            anneal_context=anneal_context,
            value_only=index < value_only_epochs,
            clock=clock,
            parallel=parallel,
            minibatch_update=minibatch_update,
            demos=demos,
        )

    state, results = run_fold(step, state, range(start, epochs), sinks=sinks, start=start)
    state = attrs.evolve(state, cycle_id=cycle_after)
    last = attrs.evolve(results[-1], duration_sec=max(0.0, clock() - started))
    return TrainResult(state=state, result=last, results=results)


def ppo_epoch(
    state: PPOState,
    data: EpochData | PreparedBatches | Sequence[ReplayBatch],
    cfg: PPOConfig,
    **legacy: Any,
) -> tuple[PPOState, Any]:
    """:func:`~townlet.policy.training.strategies.ppo.epoch.ppo_epoch` for :class:`EpochData`.

    .. deprecated:: the replay form ``ppo_epoch(state, batches, cfg, epoch_index=...,
       dataset_info=..., ...)`` returning a telemetry record is :func:`replay_epoch` now.
    """
    if isinstance(data, EpochData) and not legacy:
        return fold_epoch(state, data, cfg)
    warnings.warn(
        "ppo_epoch(state, batches, cfg, epoch_index=..., dataset_info=...) is deprecated: "
        "use replay_epoch (same arguments) or ppo_epoch(state, EpochData, cfg)",
        DeprecationWarning,
        stacklevel=2,
    )
    if isinstance(data, EpochData):
        raise TypeError("ppo_epoch(state, EpochData, cfg) takes no keyword arguments")
    return replay_epoch(state, data, cfg, **legacy)
