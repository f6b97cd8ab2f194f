"""Behaviour cloning runs: ``train_bc`` loads demonstrations, splits them (seeded), folds
:func:`~townlet.policy.training.strategies.bc.epoch.bc_epoch` over ``cfg.epochs`` epochs and
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

from townlet._summary import record_dict, short_repr
from townlet._validators import check_int_arg
from townlet.config import BCConfig
from townlet.distributed import LOCAL, Collective
from townlet.dto.policy import BCTrainingResult
from townlet.errors import ConfigError
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay.bc import flatten_bc_frames, load_bc_samples
from townlet.policy.replay.sample import ReplaySample
from townlet.policy.training.fold import Sink, callback_sink
from townlet.policy.training.strategies.ppo.train import require_torch

if TYPE_CHECKING:
    from townlet.policy.nn.network import Params
    from townlet.policy.training.strategies.bc.epoch import BCEpochStats, BCFrameTensors
    from townlet.policy.training.strategies.bc.step import BCState
    from townlet.policy.training.strategies.ppo.start import DataShape, Init

BCSource = str | os.PathLike[str] | Sequence[ReplaySample]
BCEpochCallback = Callable[[int, "BCEpochStats"], None]
"""``progress(epoch, stats)``: called after each BC epoch (1-based)."""


@attrs.frozen(kw_only=True, eq=False)
class BCInputs:
    """Demonstrations loaded once: ``frames`` (a ``BCFrameTensors``), the ``shape`` a network
    must fit (a ``DataShape``) and the ``source`` label (the manifest path, or
    ``"<in-memory>"``)."""

    frames: BCFrameTensors
    shape: DataShape
    source: str


@attrs.frozen(kw_only=True, eq=False)
class BCRun:
    """A BC run: the final ``state`` (spec, parameters, Adam moments), the ``result`` record and
    the per-epoch stats ``history``."""

    __repr__ = short_repr
    to_dict = record_dict

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


def load_bc_inputs(
    samples_or_manifest: BCSource | None,
    cfg: BCConfig,
    *,
    root: str | os.PathLike[str] | None = None,
) -> BCInputs:
    """Read the demonstrations once (default ``cfg.manifest``) as frame tensors on
    ``cfg.device`` with the data shape a network must fit. Raises ``ConfigError`` without a
    source, ``ReplayDataError`` for bad data, ``TorchNotAvailableError`` without torch."""
    require_torch("load_bc_inputs")
    from townlet.policy.nn.device import resolve_device
    from townlet.policy.training.strategies.bc import epoch
    from townlet.policy.training.strategies.ppo import start

    samples, source = _samples(samples_or_manifest, cfg, root)
    frames = flatten_bc_frames(samples)
    c, h, w = (int(d) for d in frames[0].shape[1:4]) if frames[0].ndim == 4 else (0, 0, 0)
    shape = start.DataShape(
        map_shape=(c, h, w),
        feature_dim=samples[0].feature_dim,
        action_dim=max(max(s.action_dim for s in samples), int(frames[2].max()) + 1),
        max_action=int(frames[2].max()),
    )
    device = resolve_device(cfg.device, what="training.bc.device")
    tensors = epoch.frames_to_tensors(frames, device=device)
    return BCInputs(frames=tensors, shape=shape, source=source)


def train_bc(
    samples_or_manifest: BCSource | None = None,
    *,
    cfg: BCConfig | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    spec: NetworkSpec | None = None,
    init: Init | None = None,
    progress: BCEpochCallback | None = None,
    group: Collective = LOCAL,
    sinks: Sequence[Sink] = (),
    start: tuple[int, BCState] | None = None,
) -> BCRun:
    """Behaviour-clone the demonstrations of a BC manifest (or given samples; default
    ``cfg.manifest``) for ``cfg.epochs`` epochs of Adam(``learning_rate``, ``weight_decay``) on
    the cross-entropy, minibatches of ``cfg.batch_size`` shuffled per epoch from ``seed``.

    ``cfg.val_fraction`` of the frames (seeded split by frame) is held out. The result reports,
    after training, ``accuracy``/``loss`` on the training frames and ``val_accuracy``/
    ``val_loss`` on the held-out ones (None without a split). The network is ``spec`` or the
    PPO network sized from the data (action_dim = sidecar ``action_dim``, else max action + 1);
    ``init`` (parameters, a Checkpoint or a path) starts from trained weights. ``group``
    (under torchrun, :mod:`townlet.distributed`): every rank reads the same frames and computes
    its share of every minibatch and of the evaluation — the same run, N ways.

    A shell: :func:`load_bc_inputs`, then the pure
    :func:`~townlet.policy.training.strategies.bc.epoch.fit_bc` with the run clock and
    ``progress`` as a sink. Extra ``sinks`` (e.g. periodic checkpoints) run first; ``start =
    (epochs_done, state)`` continues an interrupted run (see :mod:`townlet.policy.training.resume`).

    Raises ``TorchNotAvailableError`` without torch, ``ReplayDataError`` for bad data,
    ``ConfigError``/``CheckpointError`` for bad arguments or a network the data does not fit.
    """
    require_torch("train_bc")
    from townlet.policy.nn.device import resolve_device
    from townlet.policy.training.strategies.bc import epoch
    from townlet.policy.training.strategies.ppo import start as ppo_start

    cfg = BCConfig() if cfg is None else cfg
    check_int_arg("seed", seed, 0)
    device = resolve_device(cfg.device, what="training.bc.device")  # fail before loading data
    inputs = load_bc_inputs(samples_or_manifest, cfg, root=root)
    all_sinks = (*sinks, *(() if progress is None else (callback_sink(progress),)))
    return epoch.fit_bc(
        inputs,
        cfg,
        seed=seed,
        init=ppo_start.resolve_init(init, device=device),
        spec=spec,
        sinks=all_sinks,
        clock=time.perf_counter,
        group=group,
        start=start,
    )


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
