"""``PolicyTrainingOrchestrator``: the reference's orchestrator API as a thin adapter.

The original Townlet drove training through one stateful object
(``townlet.policy.training_orchestrator.PolicyTrainingOrchestrator``, and the newer façade
``TrainingOrchestrator`` with the alias ``PolicyTrainingOrchestrator``). This class keeps its
public methods and argument names so that existing callers keep working, and does nothing but
delegate: every method is a few lines over townlet's functional API (``train_bc``,
``train_ppo``, ``run_anneal_with_state``, ``capture_from_config``, ``load_replay_sample``,
``summarize_batch``, ``anneal_status``). New code should call those functions directly
(docs/migration.md).

What the adapter holds between calls, as the reference did: the PPO run (``ppo_state``: its
network, Adam moments and counters ``steps``/``cycle_id``/``log_stream_offset``), the last BC
run, the last anneal status, the promotion state and the anneal ratio. Results are townlet's
records (``BCTrainingResult``, ``PPOTrainingResult``, ``AnnealSummary``), which have
``model_dump()`` like the reference's DTOs. Differences (docs/migration.md): successive
``run_ppo`` calls continue one network (the reference built and discarded a fresh one each
call — call :meth:`reset_ppo` for that); rollouts are captured in townlet's town with the
scripted policy, which always has agents (``auto_seed_agents`` is accepted and has nothing to
do); errors are townlet's (``ConfigError``, ``ReplayDataError`` — ``ValueError`` subclasses,
as the reference raised).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townlet.compat.config import load_reference_config
from townlet.config import BCConfig, Config
from townlet.dto.policy import AnnealSummary, BCTrainingResult, PPOTrainingResult
from townlet.errors import ConfigError, ReplayDataError
from townlet.policy.replay import (
    InMemoryReplayDataset,
    ReplayBatch,
    ReplayDataset,
    ReplayDatasetConfig,
    build_batch,
    load_replay_sample,
)
from townlet.policy.replay.batch import summarize_batch
from townlet.policy.rollout import RolloutBuffer, build_rollout_dataset
from townlet.policy.training.services.promotion import PromotionState
from townlet.policy.training.services.rollout import capture_from_config
from townlet.policy.training.strategies.anneal.flags import anneal_status
from townlet.policy.training.strategies.anneal.state import select_social_stage

if TYPE_CHECKING:
    from townlet.policy.training.strategies.bc.train import BCRun
    from townlet.policy.training.strategies.ppo.step import PPOState
    from townlet.policy.training.strategies.ppo.train import EpochCallback

PathLike = str | os.PathLike[str]


class PolicyTrainingOrchestrator:
    """Thin adapter: the reference's ``PolicyTrainingOrchestrator(config)`` over townlet's
    functional API (see the module docstring). ``config`` is a :class:`~townlet.config.Config`
    or the path of a townlet or reference config file (:func:`load_reference_config`)."""

    def __init__(self, config: Config | PathLike) -> None:
        if isinstance(config, str | os.PathLike):
            config = load_reference_config(config)
        if not isinstance(config, Config):
            raise ConfigError(f"config must be a townlet Config or a path, got {config!r}")
        self.config = config
        self.ppo_state: PPOState | None = None
        self.bc_run: BCRun | None = None
        self.promotion: PromotionState | None = None
        self._anneal_ratio: float | None = None
        self._last_anneal_status: str | None = None

    # -- dispatch (reference: run) ---------------------------------------------------------

    def run(self) -> None:
        """Run ``config.training.source`` when it is ``bc`` or ``anneal``, as the reference's
        ``run()``; other sources raise ``NotImplementedError`` with the reference's message."""
        mode = self.config.training.source
        if mode == "bc":
            self.run_bc_training()
            return
        if mode == "anneal":
            self.run_anneal()
            return
        raise NotImplementedError(
            f"Training mode '{mode}' is not supported via run(); "
            "use townlet-train run --mode (the reference's scripts/run_training.py)."
        )

    # -- behaviour cloning -----------------------------------------------------------------

    def run_bc_training(
        self, *, manifest: PathLike | None = None, config: BCConfig | None = None
    ) -> BCTrainingResult:
        """Adapter over :func:`~townlet.policy.training.strategies.bc.train_bc`: clone the
        demonstrations of ``manifest`` (default ``training.bc.manifest``) with ``config``
        (default ``training.bc``), seeded by ``config.seed``. The run is kept as ``bc_run``."""
        from townlet.policy.training.strategies.bc.train import train_bc

        cfg = config if config is not None else self.config.training.bc
        source = manifest if manifest is not None else cfg.manifest
        if source is None:
            raise ConfigError("BC manifest is required for behaviour cloning")
        self.bc_run = train_bc(Path(source), cfg=cfg, seed=self.config.seed)
        return self.bc_run.result

    def run_bc(self, *, manifest: PathLike | None = None) -> BCTrainingResult:
        """The newer façade's name for :meth:`run_bc_training`."""
        return self.run_bc_training(manifest=manifest)

    # -- PPO -------------------------------------------------------------------------------

    def run_ppo(
        self,
        dataset_config: ReplayDatasetConfig | None = None,
        epochs: int = 1,
        log_path: PathLike | None = None,
        log_frequency: int = 1,
        max_log_entries: int | None = None,
        in_memory_dataset: InMemoryReplayDataset | ReplayDataset | None = None,
        device_str: str | None = None,
        *,
        progress: EpochCallback | None = None,
    ) -> PPOTrainingResult:
        """Adapter over :func:`~townlet.policy.training.strategies.ppo.train_ppo` on
        ``in_memory_dataset``, else ``ReplayDataset(dataset_config)``, with ``config.ppo`` and
        ``config.seed``; continues ``ppo_state`` when there is one. ``progress(epoch, record)``
        is called after every epoch. Returns the last epoch's record."""
        from townlet.policy.training.strategies.ppo.train import train_ppo

        if in_memory_dataset is not None:
            dataset: InMemoryReplayDataset | ReplayDataset = in_memory_dataset
        elif dataset_config is not None:
            dataset = ReplayDataset(dataset_config)
        else:
            raise ConfigError("dataset_config is required when in_memory_dataset is not provided")
        if len(dataset) == 0:
            raise ReplayDataError("Replay dataset yielded no batches")
        run = train_ppo(
            dataset,
            cfg=self.config.ppo,
            epochs=epochs,
            seed=self.config.seed,
            state=self.ppo_state,
            log_path=Path(log_path) if log_path is not None else None,
            log_frequency=log_frequency,
            max_log_entries=max_log_entries,
            device=device_str or "cpu",
            progress=progress,
        )
        self.ppo_state = run.state
        return run.result

    def reset_ppo(self) -> None:
        """Forget the PPO run: the next :meth:`run_ppo` starts a fresh network and counters, as
        every reference ``run_ppo`` call did."""
        self.ppo_state = None

    # -- rollouts --------------------------------------------------------------------------

    def capture_rollout(
        self,
        ticks: int,
        auto_seed_agents: bool = False,
        output_dir: PathLike | None = None,
        prefix: str = "rollout_sample",
        compress: bool = True,
    ) -> RolloutBuffer:
        """Adapter over :func:`~townlet.policy.training.services.rollout.capture_from_config`:
        ``ticks`` ticks of the configured town under the scripted policy, saved to
        ``output_dir`` when given. ``auto_seed_agents`` has nothing to do (the town always has
        ``world.num_agents`` agents)."""
        del auto_seed_agents
        return capture_from_config(
            self.config,
            ticks=ticks,
            social_stage=self._next_social_stage(),
            output_dir=output_dir,
            prefix=prefix,
            compress=compress,
        )

    def run_rollout_ppo(
        self,
        ticks: int,
        batch_size: int = 1,
        auto_seed_agents: bool = False,
        output_dir: PathLike | None = None,
        prefix: str = "rollout_sample",
        compress: bool = True,
        epochs: int = 1,
        log_path: PathLike | None = None,
        log_frequency: int = 1,
        max_log_entries: int | None = None,
    ) -> PPOTrainingResult:
        """Capture a rollout in the social stage of the next cycle (the schedule's stage for
        ``cycle_id + 1``), then :meth:`run_ppo` on it as an in-memory dataset."""
        buffer = self.capture_rollout(ticks, auto_seed_agents, output_dir, prefix, compress)
        return self.run_ppo(
            epochs=epochs,
            log_path=log_path,
            log_frequency=log_frequency,
            max_log_entries=max_log_entries,
            in_memory_dataset=build_rollout_dataset(buffer, batch_size=batch_size),
        )

    def _next_social_stage(self) -> str | None:
        cycle = (self.ppo_state.cycle_id if self.ppo_state is not None else -1) + 1
        return select_social_stage(self.config.training, cycle)

    # -- anneal ----------------------------------------------------------------------------

    def run_anneal(
        self,
        *,
        dataset_config: ReplayDatasetConfig | None = None,
        in_memory_dataset: InMemoryReplayDataset | ReplayDataset | None = None,
        log_dir: PathLike | None = None,
        bc_manifest: PathLike | None = None,
    ) -> AnnealSummary:
        """Adapter over :func:`~townlet.policy.training.strategies.anneal.run_anneal_with_state`
        on ``in_memory_dataset``, else ``ReplayDataset(dataset_config)``, else
        ``training.replay_manifest``; ``log_dir`` is its ``out_dir``. Keeps the status and the
        promotion state (passed back on the next call, as the reference's manager was)."""
        from townlet.policy.training.strategies.anneal.run import run_anneal_with_state

        ppo_data = in_memory_dataset
        if ppo_data is None and dataset_config is not None:
            ppo_data = ReplayDataset(dataset_config)
        run = run_anneal_with_state(
            self.config,
            bc_data=Path(bc_manifest) if bc_manifest is not None else None,
            ppo_data=ppo_data,
            out_dir=log_dir,
            promotion=self.promotion,
            quiet=True,
        )
        self._last_anneal_status = run.summary.status
        self.promotion = run.promotion
        return run.summary

    def evaluate_anneal_results(self, results: Iterable[Any]) -> str:
        """``PASS``/``HOLD``/``FAIL`` of stage results (records or the reference's dicts)."""
        return str(anneal_status(results))

    def last_anneal_status(self) -> str | None:
        """The status of the last :meth:`run_anneal`, None before one."""
        return self._last_anneal_status

    def current_anneal_ratio(self) -> float | None:
        """The BC weight last set with :meth:`set_anneal_ratio` (None: unset)."""
        return self._anneal_ratio

    def set_anneal_ratio(self, ratio: float | None) -> None:
        """Store ``ratio`` clamped to [0, 1] (None unsets), as the reference did."""
        self._anneal_ratio = None if ratio is None else max(0.0, min(1.0, float(ratio)))

    # -- replay data -----------------------------------------------------------------------

    def build_replay_dataset(
        self, config: ReplayDatasetConfig | PathLike | None = None
    ) -> ReplayDataset:
        """A :class:`ReplayDataset` from ``config``, a manifest path, or
        ``training.replay_manifest``."""
        if config is None:
            config = self.config.training.replay_manifest
            if config is None:
                raise ConfigError(
                    "Replay manifest required: pass one or set training.replay_manifest"
                )
        if not isinstance(config, ReplayDatasetConfig):
            config = ReplayDatasetConfig.from_manifest(Path(config))
        return ReplayDataset(config)

    def run_replay(
        self, sample_path: PathLike, meta_path: PathLike | None = None
    ) -> dict[str, float]:
        """Load one sample, print ``Replay sample loaded: {summary}`` and return the summary
        (:func:`~townlet.policy.replay.batch.summarize_batch`)."""
        sample = load_replay_sample(sample_path, meta_path)
        summary = summarize_batch(build_batch([sample]), batch_index=1)
        print("Replay sample loaded:", summary)
        return summary

    def run_replay_batch(
        self, pairs: Iterable[tuple[PathLike, PathLike | None]]
    ) -> dict[str, float]:
        """:meth:`run_replay_dataset` over ``pairs`` of (sample, sidecar) as one batch."""
        entries = [(Path(s), Path(m) if m is not None else None) for s, m in pairs]
        if not entries:
            raise ReplayDataError("Replay batch requires at least one entry")
        return self.run_replay_dataset(
            ReplayDatasetConfig(entries=entries, batch_size=len(entries))
        )

    def run_replay_dataset(
        self, dataset_config: ReplayDatasetConfig | ReplayDataset | Iterable[ReplayBatch]
    ) -> dict[str, float]:
        """Print ``Replay batch i: {summary}`` for every batch; return the last summary."""
        dataset: Iterable[ReplayBatch]
        if isinstance(dataset_config, ReplayDatasetConfig):
            dataset = ReplayDataset(dataset_config)
        else:
            dataset = dataset_config
        summary: Mapping[str, float] = {}
        for index, batch in enumerate(dataset, start=1):
            summary = summarize_batch(batch, batch_index=index)
            print(f"Replay batch {index}:", summary)
        if not summary:
            raise ReplayDataError("Replay dataset yielded no batches")
        return dict(summary)


# The reference's other names for the same object.
TrainingOrchestrator = PolicyTrainingOrchestrator
TrainingHarness = PolicyTrainingOrchestrator
