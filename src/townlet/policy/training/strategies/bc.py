"""Behaviour cloning runs: ``train_bc`` loads demonstrations, splits them (seeded), folds
:func:`~townlet.policy.training.strategies.bc_loop.bc_epoch` over ``cfg.epochs`` epochs and
reports training and validation accuracy/loss (DESIGN §5.6). The trained parameters have the
PPO network's spec, so they initialise PPO (DESIGN §5.1).

This module imports without torch; calling :func:`train_bc` without torch raises
:class:`~townlet.errors.TorchNotAvailableError`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from townlet._validators import check_int_arg
from townlet.config import BCConfig
from townlet.dto.policy import BCTrainingResult
from townlet.errors import ConfigError
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay.bc import flatten_bc_frames, load_bc_samples
from townlet.policy.replay.sample import ReplaySample
from townlet.policy.training.strategies.ppo import require_torch

if TYPE_CHECKING:
    from townlet.policy.nn.network import Params
    from townlet.policy.training.strategies.bc_loop import BCEpochStats, BCFrameTensors
    from townlet.policy.training.strategies.bc_step import BCState
    from townlet.policy.training.strategies.ppo_init import Init

BCSource = str | os.PathLike[str] | Sequence[ReplaySample]
BCEpochCallback = Callable[[int, "BCEpochStats"], None]
"""``progress(epoch, stats)``: called after each BC epoch (1-based)."""


@attrs.frozen(kw_only=True, eq=False)
class BCRun:
    """A BC run: the final ``state`` (spec, parameters, Adam moments), the ``result`` record and
    the per-epoch stats ``history``."""

    state: BCState
    result: BCTrainingResult
    history: tuple[BCEpochStats, ...]

    @property
    def spec(self) -> NetworkSpec:
        """The network spec (the same a PPO run on this data infers)."""
        return self.state.spec

    @property
    def params(self) -> Params:
        """The trained parameters (pass as ``train_ppo(init=...)``)."""
        return self.state.params


def _samples(
    source: BCSource | None, cfg: BCConfig, root: str | os.PathLike[str] | None
) -> tuple[list[ReplaySample], str]:
    if source is None:
        if cfg.manifest is None:
            raise ConfigError(
                "BC manifest is required for behaviour cloning: pass a manifest or samples, "
                "or set training.bc.manifest"
            )
        source = cfg.manifest
    if isinstance(source, str | os.PathLike):
        return load_bc_samples(source, root=root), str(source)
    return list(source), "<in-memory>"


def _run_epochs(
    state: BCState, train: BCFrameTensors, cfg: BCConfig, progress: BCEpochCallback | None
) -> tuple[BCState, list[BCEpochStats]]:
    from townlet.policy.training.strategies.bc_loop import bc_batches, bc_epoch
    from townlet.policy.training.strategies.compiled_update import make_bc_update

    # One update for the run: a compiled one keeps its compiled variants across epochs.
    update = make_bc_update(cfg.compile)
    history = []
    for epoch in range(cfg.epochs):
        batches = bc_batches(train, cfg.batch_size, seed=state.seed, epoch=epoch)
        state, stats = bc_epoch(state, batches, cfg, update=update)
        history.append(stats)
        if progress is not None:
            progress(epoch + 1, stats)
    return state, history


def train_bc(
    samples_or_manifest: BCSource | None = None,
    *,
    cfg: BCConfig | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    spec: NetworkSpec | None = None,
    init: Init | None = None,
    progress: BCEpochCallback | None = None,
) -> BCRun:
    """Behaviour-clone the demonstrations of a BC manifest (or given samples; default
    ``cfg.manifest``) for ``cfg.epochs`` epochs of Adam(``learning_rate``, ``weight_decay``) on
    the cross-entropy, minibatches of ``cfg.batch_size`` shuffled per epoch from ``seed``.

    ``cfg.val_fraction`` of the frames (seeded split by frame) is held out. The result reports,
    after training, ``accuracy``/``loss`` on the training frames and ``val_accuracy``/
    ``val_loss`` on the held-out ones (None without a split). The network is ``spec`` or the
    PPO network sized from the data (action_dim = sidecar ``action_dim``, else max action + 1);
    ``init`` (parameters, a Checkpoint or a path) starts from trained weights.

    Raises ``TorchNotAvailableError`` without torch, ``ReplayDataError`` for bad data,
    ``ConfigError``/``CheckpointError`` for bad arguments or a network the data does not fit.
    """
    require_torch("train_bc")
    from townlet.policy.nn.device import resolve_device
    from townlet.policy.training.strategies import bc_loop, ppo_init
    from townlet.policy.training.strategies.bc_step import init_bc_state

    cfg = BCConfig() if cfg is None else cfg
    check_int_arg("seed", seed, 0)
    device = resolve_device(cfg.device, what="training.bc.device")
    started = time.perf_counter()
    samples, source = _samples(samples_or_manifest, cfg, root)
    frames = flatten_bc_frames(samples)
    c, h, w = (int(d) for d in frames[0].shape[1:4]) if frames[0].ndim == 4 else (0, 0, 0)
    shape = ppo_init.DataShape(
        map_shape=(c, h, w),
        feature_dim=samples[0].feature_dim,
        action_dim=max(max(s.action_dim for s in samples), int(frames[2].max()) + 1),
        max_action=int(frames[2].max()),
    )
    net, params = ppo_init.initial_params(
        shape, label=source, seed=seed, init=init, spec=spec, device=device
    )
    tensors = bc_loop.frames_to_tensors(frames, device=device)
    train, val = bc_loop.split_frames(tensors, cfg.val_fraction, seed)
    state, history = _run_epochs(init_bc_state(net, seed=seed, params=params), train, cfg, progress)
    accuracy, loss = bc_loop.bc_evaluate(state.params, train, spec=net)
    val_accuracy, val_loss = (None, None)
    if val is not None:
        val_accuracy, val_loss = bc_loop.bc_evaluate(state.params, val, spec=net)
    result = BCTrainingResult(
        duration_sec=time.perf_counter() - started,
        manifest=source,
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
    return BCRun(state=state, result=result, history=tuple(history))


def save_bc_checkpoint(path: str | Path, run: BCRun) -> Path:
    """Save a BC run's spec and parameters (plus its result under ``extra["result"]``) as a
    checkpoint that ``train_ppo(init=path)`` and ``load_checkpoint`` read."""
    require_torch("save_bc_checkpoint")
    from townlet.policy.nn.checkpoint import save_checkpoint

    return save_checkpoint(
        path,
        spec=run.state.spec,
        params=run.state.params,
        adam_state=run.state.adam_state,
        counters={"seed": run.state.seed, "updates": run.state.updates},
        extra={"kind": "bc", "result": run.result.to_dict()},
    )
