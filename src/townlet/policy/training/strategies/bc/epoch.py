"""Behaviour cloning epochs as pure folds (``spec/reference-bc_anneal_promotion.md`` §3).

Frames (one per step of every demonstration) are split once into training and validation sets
by a seeded permutation; every epoch cuts the training frames into shuffled minibatches from
``stream_generator(seed, Stream.BC_SHUFFLE, epoch)`` (on the frames' device) and folds
:func:`~townlet.policy.training.strategies.bc.step.bc_minibatch_update` over them, reading the
stats back once per epoch. Evaluation runs without gradients.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Sequence

import attrs
import torch
import torch.nn.functional as F

from townlet._records import map_fields
from townlet.config import BCConfig
from townlet.distributed import LOCAL, Collective, shard_bounds
from townlet.distributed.group import all_reduce_sum
from townlet.distributed.parallel import SINGLE, DataParallel, make_data_parallel, take_rank_rows
from townlet.dto.policy import BCTrainingResult
from townlet.policy.nn.device import resolve_device
from townlet.policy.nn.network import Params, apply
from townlet.policy.nn.rng import stream_generator
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay.bc import BCFrames
from townlet.policy.streams import Stream
from townlet.policy.training.fold import Sink, run_fold
from townlet.policy.training.strategies.bc.compiled import BCUpdate, make_bc_update
from townlet.policy.training.strategies.bc.step import (
    BCBatch,
    BCState,
    bc_minibatch_update,
    init_bc_state,
)
from townlet.policy.training.strategies.bc.train import BCInputs, BCRun
from townlet.policy.training.strategies.ppo.start import Init, initial_params

# Deprecated names of the streams' tags.
BC_SHUFFLE_STREAM = Stream.BC_SHUFFLE.tag
BC_SPLIT_STREAM = Stream.BC_SPLIT.tag


@attrs.frozen(kw_only=True, eq=False)
class BCFrameTensors:
    """N demonstration frames as tensors: ``maps`` ``(N, C, H, W)`` (None without a map),
    ``features`` ``(N, D)`` float32, ``actions`` ``(N,)`` int64."""

    maps: torch.Tensor | None
    features: torch.Tensor
    actions: torch.Tensor

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def take(self, indices: torch.Tensor) -> BCFrameTensors:
        """The frames at ``indices`` (new tensors)."""
        return map_fields(operator.itemgetter(indices), self)

    def as_batch(self) -> BCBatch:
        """``(maps, features, actions)`` for :func:`bc_minibatch_update`."""
        return (self.maps, self.features, self.actions)


def frames_to_tensors(frames: BCFrames, *, device: str | torch.device = "cpu") -> BCFrameTensors:
    """Tensors of :func:`~townlet.policy.replay.flatten_bc_frames` output (maps dropped when
    they are empty, ``C·H·W == 0``)."""
    maps, features, actions = frames
    has_map = maps.ndim == 4 and math.prod(maps.shape[1:]) > 0
    return BCFrameTensors(
        maps=torch.as_tensor(maps, device=device) if has_map else None,
        features=torch.as_tensor(features, device=device),
        actions=torch.as_tensor(actions, device=device),
    )


def split_frames(
    frames: BCFrameTensors, val_fraction: float, seed: int
) -> tuple[BCFrameTensors, BCFrameTensors | None]:
    """A seeded train/validation split: ``floor(N · val_fraction)`` frames (at most N − 1) drawn
    by a permutation from ``stream_generator(seed, Stream.BC_SPLIT)`` are held out; None when
    that is zero frames. Both parts keep the original frame order."""
    n = len(frames)
    n_val = min(int(n * val_fraction), n - 1)
    if n_val <= 0:
        return frames, None
    generator = stream_generator(seed, Stream.BC_SPLIT, device=frames.actions.device)
    perm = torch.randperm(n, generator=generator, device=generator.device)
    val_idx, _ = torch.sort(perm[:n_val])
    train_idx, _ = torch.sort(perm[n_val:])
    return frames.take(train_idx), frames.take(val_idx)


def bc_batches(frames: BCFrameTensors, batch_size: int, *, seed: int, epoch: int) -> list[BCBatch]:
    """Epoch ``epoch``'s shuffled minibatches of ``batch_size`` frames (the last may be short),
    from ``stream_generator(seed, Stream.BC_SHUFFLE, epoch)``."""
    generator = stream_generator(seed, Stream.BC_SHUFFLE, epoch, device=frames.actions.device)
    perm = torch.randperm(len(frames), generator=generator, device=generator.device)
    return [frames.take(idx).as_batch() for idx in torch.split(perm, batch_size)]


@attrs.frozen(kw_only=True)
class BCEpochStats:
    """One BC epoch: ``loss`` and ``accuracy`` averaged over its frames (each minibatch measured
    before its update), ``last_loss`` of the final minibatch (the reference's ``loss``),
    ``samples`` and ``updates``."""

    loss: float
    accuracy: float
    last_loss: float
    samples: int
    updates: int


def bc_epoch(
    state: BCState,
    batches: list[BCBatch],
    cfg: BCConfig,
    *,
    parallel: DataParallel = SINGLE,
    update: BCUpdate = bc_minibatch_update,
) -> tuple[BCState, BCEpochStats]:
    """Fold ``update`` (the eager update or the run's compiled one) over ``batches``: the new
    state and the epoch's stats. ``state`` and ``batches`` are unchanged; the per-minibatch
    stats vectors stay on the device and are read back once, at the end of the epoch. Raises
    ``ValueError`` for no batches. With ``parallel`` every rank holds the same ``batches`` and
    computes its share of each; the stats are the global minibatches'
    (:mod:`townlet.distributed.parallel`)."""
    if not batches:
        raise ValueError("BC epoch needs at least one minibatch")
    vectors: list[torch.Tensor] = []
    for batch in batches:
        part = take_rank_rows(parallel, batch)
        # Updates after the fold's first donate the state the fold itself made (no copy).
        state, values = update(
            state, part, cfg, reduce_grads=parallel.reduce_grads, donate=bool(vectors)
        )
        vectors.append(values)
    rows: list[list[float]] = torch.stack(vectors).tolist()
    loss_sum, correct, samples = 0.0, 0, 0
    for row, batch in zip(rows, batches, strict=True):
        n = int(batch[2].shape[0])  # the global minibatch: every rank holds all of it
        loss_sum += row[0] * n
        correct += round(row[1] * n)
        samples += n
    return state, BCEpochStats(
        loss=loss_sum / samples,
        accuracy=correct / samples,
        last_loss=rows[-1][0],
        samples=samples,
        updates=len(batches),
    )


def bc_evaluate(
    params: Params, frames: BCFrameTensors, *, spec: NetworkSpec, batch_size: int = 4096
) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``params`` on ``frames``, without gradients."""
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            part = frames.take(torch.arange(start, min(start + batch_size, len(frames))))
            logits, _ = apply(params, part.maps, part.features, spec=spec)
            loss = F.cross_entropy(logits, part.actions, reduction="sum")
            hits = (logits.argmax(dim=-1) == part.actions).sum()
            loss_value, hit_value = torch.stack([loss, hits.to(loss.dtype)]).tolist()
            loss_sum += loss_value
            correct += int(hit_value)
    n = max(1, len(frames))
    return correct / n, loss_sum / n


def _no_clock() -> float:
    return 0.0


def bc_epoch_step(
    state: BCState,
    epoch: int,
    *,
    train: BCFrameTensors,
    cfg: BCConfig,
    parallel: DataParallel = SINGLE,
    update: BCUpdate = bc_minibatch_update,
) -> tuple[BCState, BCEpochStats]:
    """Epoch ``epoch`` (0-based): :func:`bc_epoch` over :func:`bc_batches` of ``train``."""
    batches = bc_batches(train, cfg.batch_size, seed=state.seed, epoch=epoch)
    return bc_epoch(state, batches, cfg, parallel=parallel, update=update)


def bc_evaluate_sharded(
    params: Params, frames: BCFrameTensors, *, spec: NetworkSpec, group: Collective
) -> tuple[float, float]:
    """:func:`bc_evaluate` with each rank evaluating its share of ``frames`` and the sums
    all-reduced (the same numbers on every rank); :func:`bc_evaluate` itself on one process."""
    if group.backend is None:
        return bc_evaluate(params, frames, spec=spec)
    start, stop = shard_bounds(len(frames), group.rank, group.world_size)
    part = frames.take(torch.arange(start, stop, device=frames.actions.device))
    accuracy, loss = bc_evaluate(params, part, spec=spec) if len(part) else (0.0, 0.0)
    n = len(part)
    hits, loss_sum, total = all_reduce_sum(group, [accuracy * n, loss * n, float(n)])
    return round(hits) / max(1.0, total), loss_sum / max(1.0, total)


def fit_bc(
    inputs: BCInputs,
    cfg: BCConfig,
    *,
    seed: int,
    init: Init | None = None,
    spec: NetworkSpec | None = None,
    sinks: Sequence[Sink] = (),
    clock: Callable[[], float] = _no_clock,
    group: Collective = LOCAL,
    start: tuple[int, BCState] | None = None,
) -> BCRun:
    """Behaviour-clone ``inputs`` (loaded once): the seeded train/validation split, ``cfg.epochs``
    epochs folded by :func:`~townlet.policy.training.fold.run_fold` (each epoch's stats handed
    to ``sinks``), then accuracy and loss on both parts. Pure apart from ``sinks`` and ``clock``
    (which only times ``duration_sec``; 0 by default). ``init`` is parameters or a
    ``Checkpoint`` (paths are resolved by the caller). ``group`` (under torchrun): every rank
    holds the same frames and computes its share of every minibatch and of the evaluation.
    ``start = (epochs_done, state)`` continues an interrupted run from its checkpointed state
    (``history`` then holds the new epochs). ``cfg.device`` may be ``auto``; ``cfg.compile``
    picks the minibatch update, built once."""
    started = clock()
    parallel = make_data_parallel(group, shared_data=True)
    device = resolve_device(cfg.device, what="training.bc.device")
    net, params = initial_params(
        inputs.shape, label=inputs.source, seed=seed, init=init, spec=spec, device=device
    )
    train, val = split_frames(inputs.frames, cfg.val_fraction, seed)
    update = make_bc_update(cfg.compile)
    done, first = (0, init_bc_state(net, seed=seed, params=params)) if start is None else start
    state, history = run_fold(
        lambda s, epoch: bc_epoch_step(
            s, epoch, train=train, cfg=cfg, parallel=parallel, update=update
        ),
        first,
        range(done, cfg.epochs),
        sinks=sinks,
        start=done,
    )
    evaluate = functools.partial(bc_evaluate_sharded, spec=net, group=group)
    accuracy, loss = evaluate(state.params, train)
    val_accuracy, val_loss = (None, None) if val is None else evaluate(state.params, val)
    result = BCTrainingResult(
        duration_sec=clock() - started,
        manifest=inputs.source,
        accuracy=accuracy,
        loss=loss,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        val_accuracy=val_accuracy,
        val_loss=val_loss,
        weight_decay=cfg.weight_decay,
        device=str(device),
    )
    return BCRun(state=state, result=result, history=history)
