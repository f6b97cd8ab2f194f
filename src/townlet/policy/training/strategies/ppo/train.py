"""PPO on a replay dataset: ``train_ppo`` folds :func:`ppo_epoch` over E epochs and does the I/O
around it (telemetry lines, progress, the run clock). ``spec/reference-ppo.md`` §2, §12, §13.

This module imports without torch; calling :func:`train_ppo` without torch raises
:class:`~townlet.errors.TorchNotAvailableError`. Everything that computes lives in
:mod:`~townlet.policy.training.strategies.ppo.replay` (the epoch) and
:mod:`~townlet.policy.training.strategies.ppo.start` (the initial state).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from townlet._summary import record_dict, short_repr
from townlet._validators import check_int_arg
from townlet.config import PPOConfig
from townlet.distributed import LOCAL, Collective
from townlet.dto.policy import PPOTrainingResult
from townlet.errors import ConfigError, ReplayDataError, TorchNotAvailableError
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay.dataset import InMemoryReplayDataset, ReplayDataset
from townlet.policy.training.fold import Sink, run_sinks
from townlet.policy.training.strategies.ppo.summary import (
    AnnealContext,
    dataset_info,
)

if TYPE_CHECKING:
    from townlet.policy.training.strategies.ppo.start import Init
    from townlet.policy.training.strategies.ppo.step import PPOState

EpochCallback = Callable[[int, PPOTrainingResult], None]
"""``progress(epoch, record)``: called after each epoch (1-based) with its telemetry record."""


def require_torch(feature: str) -> None:
    """Raise :class:`TorchNotAvailableError` (with the install hint) when torch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise TorchNotAvailableError(feature) from exc


@attrs.frozen(kw_only=True, eq=False)
class TrainResult:
    """A PPO run: the final ``state`` (pass it back as ``state=`` to continue the run), the last
    epoch's record ``result`` (with ``duration_sec`` = the whole run's wall time) and every
    epoch's record ``results`` in order (what the telemetry log holds, unsampled)."""

    __repr__ = short_repr
    to_dict = record_dict

    state: PPOState
    result: PPOTrainingResult
    results: tuple[PPOTrainingResult, ...]


def _check_args(epochs: int, seed: int, value_only_epochs: int) -> None:
    check_int_arg("epochs", epochs, 1)
    check_int_arg("seed", seed, 0)
    if value_only_epochs < 0:
        raise ConfigError(f"value_only_epochs must be >= 0, got {value_only_epochs!r}")


def train_ppo(
    dataset: ReplayDataset | InMemoryReplayDataset,
    *,
    cfg: PPOConfig | None = None,
    epochs: int = 1,
    seed: int = 0,
    init: Init | None = None,
    spec: NetworkSpec | None = None,
    state: PPOState | None = None,
    log_path: str | Path | None = None,
    log_frequency: int = 1,
    max_log_entries: int | None = None,
    anneal_context: AnnealContext | None = None,
    value_only_epochs: int = 0,
    progress: EpochCallback | None = None,
    device: str = "cpu",
    data_mode: str | None = None,
    clock: Callable[[], float] = time.perf_counter,
    group: Collective = LOCAL,
    own_data: bool = False,
    sinks: Sequence[Sink] = (),
    start_epoch: int = 0,
) -> TrainResult:
    """Train PPO for ``epochs`` epochs on ``dataset`` and return a :class:`TrainResult`.

    The batches of ``dataset.batches(0)`` are read once and visited in the same order every
    epoch (as the reference). The network starts from ``state`` (continue a run: its counters
    go on), else from ``init`` (parameters, a ``Checkpoint`` or a checkpoint path, e.g. a BC
    run's — its spec wins and the data must fit it), else from ``init_params(spec, seed)`` with
    ``spec`` inferred from the data (§2.4: sidecar ``action_dim``, else max action + 1;
    ``cfg.reference_compat``: max action + 1, and the reference's minibatch order). The
    first ``value_only_epochs`` epochs train only the value head (critic warm-up). With
    ``log_path`` every ``log_frequency``-th epoch is appended as a telemetry line (1.2; 1.3 with
    extension keys), rotating
    to ``<log>.1``, ``<log>.2`` … after ``max_log_entries`` lines (§13). ``anneal_context``
    fills the ``anneal_*`` fields; ``data_mode`` overrides the dataset's (e.g. ``"mixed"``).
    The same seed and data give the same records, ``epoch_duration_sec`` apart. ``device`` is
    ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when available); the prepared batches live
    there for the whole run. ``cfg.compile`` picks the minibatch update (docs/gpu.md). ``group``
    (under torchrun, :mod:`townlet.distributed`): every rank reads the same data and computes
    its share of every minibatch — the same run, N ways; rank 0 alone writes ``log_path``. With
    ``own_data`` each rank's ``dataset`` is its own (its rollouts, of equal size on every rank):
    each cuts its own minibatches and the global minibatch is their union.
    Extra ``sinks`` (e.g. periodic checkpoints) run after the telemetry sink; ``start_epoch``
    epochs of this run already ran and ``state`` is their checkpointed state (a resumed run, see
    :mod:`townlet.policy.training.resume`).

    Raises: ``TorchNotAvailableError`` without torch; ``ReplayDataError`` for a dataset without
    batches; ``ConfigError``/``CheckpointError`` for bad arguments or a network the data does
    not fit; ``NonFiniteTrainingError`` (a ``ValueError`` and ``TrainingFailedError``) when
    advantages, returns or losses are NaN/Inf.
    """
    require_torch("train_ppo")
    from townlet.distributed.parallel import check_equal_rows, make_data_parallel
    from townlet.policy.nn.device import resolve_device
    from townlet.policy.training.strategies import minibatch_order
    from townlet.policy.training.strategies.ppo import replay, start

    cfg = PPOConfig() if cfg is None else cfg
    _check_args(epochs, seed, value_only_epochs)
    torch_device = resolve_device(device)
    info = dataset_info(dataset, data_mode=data_mode)
    batches = list(dataset.batches(0))
    if not batches:
        raise ReplayDataError(f"Replay dataset yielded no batches (dataset={info.label})")
    state = start.start_state(
        minibatch_order.run_data_shape(batches, cfg),
        label=info.label,
        seed=seed,
        state=state,
        init=start.resolve_init(init, device=torch_device),
        spec=spec,
        device=torch_device,
    )
    param_device = next(iter(state.params.values())).device
    prepared = replay.prepare_batches(batches, cfg, label=info.label, device=param_device)
    parallel = make_data_parallel(group, shared_data=not own_data)
    check_equal_rows(parallel, sum(len(b) for b in prepared.batches), what=info.label)
    run_log_sinks = run_sinks(
        log_path=log_path if group.is_root else None,
        log_frequency=log_frequency,
        max_log_entries=max_log_entries,
        progress=progress,
        record=lambda record: record,
        start=start_epoch,
    )
    return replay.fit_ppo(
        state,
        prepared,
        info,
        cfg,
        epochs=epochs,
        value_only_epochs=value_only_epochs,
        anneal_context=anneal_context,
        sinks=(*run_log_sinks, *sinks),
        clock=clock,
        parallel=parallel,
        start=start_epoch,
    )
