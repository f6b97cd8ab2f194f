"""What anneal stages train on: :class:`AnnealData` (as given: a BC manifest or samples, a
replay dataset, a rollout plan) and :class:`AnnealInputs` (the same, loaded once by
:func:`load_anneal_data`, so that no stage reads a file). Imports without torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from townlet.config import AnnealStage, Config
from townlet.distributed import LOCAL, Collective, rank_seed
from townlet.errors import ConfigError
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay.batch import ReplayBatch
from townlet.policy.replay.dataset import InMemoryReplayDataset, ReplayDataset
from townlet.policy.replay.metrics import ReplayEventCounts
from townlet.policy.replay.sample import ReplaySample
from townlet.policy.streams import Stream
from townlet.policy.training.strategies.anneal.state import (
    AnnealState,
    select_social_stage,
    stage_seed,
)
from townlet.policy.training.strategies.ppo.summary import (
    PPODatasetInfo,
    dataset_info,
)
from townlet.world import WorldConfig

if TYPE_CHECKING:
    from townlet.policy.rollout.buffer import RolloutBuffer
    from townlet.policy.training.strategies.bc.train import BCInputs
    from townlet.policy.training.strategies.ppo.start import DataShape

BCData = str | os.PathLike[str] | Sequence[ReplaySample]
PPOData = ReplayDataset | InMemoryReplayDataset
DEFAULT_DATASET_LABEL = "anneal_dataset"


@attrs.frozen(kw_only=True)
class RolloutPlan:
    """Fresh rollouts for PPO stages: ``ticks`` ticks of the town ``world`` (its social stage is
    replaced per cycle by the schedule), cut into one batch per ``batch_size`` agents."""

    world: WorldConfig = attrs.field(factory=WorldConfig)
    ticks: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    batch_size: int = attrs.field(default=1, validator=attrs.validators.ge(1))


@attrs.frozen(kw_only=True, eq=False)
class AnnealData:
    """What the stages train on: ``bc`` demonstrations (a BC manifest path or samples; None
    means ``training.bc.manifest``), and for PPO stages a replay ``ppo`` dataset or a
    ``rollout`` plan (a dataset wins when both are given). ``group``: the ranks the stages
    run on (:mod:`townlet.distributed`): they share the BC and replay data, and each captures
    its own rollouts (rank seed), event counters and returns summed over the ranks."""

    bc: BCData | None = None
    ppo: PPOData | None = None
    rollout: RolloutPlan | None = None
    group: Collective = LOCAL

    @property
    def label(self) -> str:
        """The dataset label of the PPO stages (``anneal_*`` telemetry, baselines key)."""
        if self.ppo is not None:
            return self.ppo.label or DEFAULT_DATASET_LABEL
        return "rollout_buffer" if self.rollout is not None else DEFAULT_DATASET_LABEL


@attrs.frozen(kw_only=True, eq=False)
class PPOInputs:
    """A PPO stage's data, loaded once: the ``batches`` of ``dataset.batches(0)``, the dataset
    ``info`` and the ``shape`` a network must fit (None without batches)."""

    batches: tuple[ReplayBatch, ...]
    info: PPODatasetInfo
    shape: DataShape | None


@attrs.frozen(kw_only=True, eq=False)
class AnnealInputs:
    """:class:`AnnealData` loaded once (:func:`load_anneal_data`): BC demonstrations as frame
    tensors, the replay batches of PPO stages, or the rollout plan with the network spec a
    fresh rollout run starts with. What :func:`anneal_stage_step` reads; no file is read
    after this."""

    bc: BCInputs | None
    ppo: PPOInputs | None
    rollout: RolloutPlan | None
    rollout_spec: NetworkSpec | None
    label: str
    group: Collective = LOCAL


def check_schedule(schedule: Sequence[AnnealStage], data: AnnealData, config: Config) -> None:
    """Refuse, before any stage runs, what would fail midway.

    Raises ``ConfigError``: an empty schedule; a BC stage, or PPO stages with
    ``training.anneal_bc_target = "demos"``, without demonstrations (no ``data.bc`` and no
    ``training.bc.manifest``); a PPO stage without a dataset or rollout plan.
    """
    if not schedule:
        raise ConfigError(
            "anneal_schedule is empty. Configure training.anneal_schedule in your config."
        )
    modes = {stage.mode for stage in schedule}
    if "bc" in modes and data.bc is None and config.training.bc.manifest is None:
        raise ConfigError(
            "BC manifest is required for BC stages in anneal: pass BC data (--bc-manifest) or "
            "set training.bc.manifest"
        )
    if (
        "ppo" in modes
        and config.training.anneal_bc_target == "demos"
        and data.bc is None
        and config.training.bc.manifest is None
    ):
        raise ConfigError(
            'training.anneal_bc_target = "demos" needs demonstrations for the PPO stages\' BC '
            "term: pass BC data (--bc-manifest) or set training.bc.manifest"
        )
    if "ppo" in modes and data.ppo is None and data.rollout is None:
        raise ConfigError(
            "Replay manifest required for PPO stages in anneal: pass a replay dataset "
            "(--manifest/--capture-dir), a rollout source (--rollout-ticks), or set "
            "training.replay_manifest"
        )


def ppo_inputs(dataset: PPOData) -> PPOInputs:
    """The batches, info and data shape of ``dataset`` (read once)."""
    from townlet.policy.training.strategies.ppo.start import data_shape

    batches = tuple(dataset.batches(0))
    return PPOInputs(
        batches=batches,
        info=dataset_info(dataset),
        shape=data_shape(batches) if batches else None,
    )


def load_anneal_data(
    data: AnnealData, config: Config, *, stages: Sequence[AnnealStage] | None = None
) -> AnnealInputs:
    """Read what the stages train on, once: the BC demonstrations (``data.bc``, else
    ``training.bc.manifest``), the replay batches, or the network spec of the rollout town —
    each only when a stage of ``stages`` (default: both kinds) needs it (PPO stages need the
    demonstrations too with ``training.anneal_bc_target = "demos"``). Raises
    ``ConfigError``/``ReplayDataError`` for missing or bad data and ``TorchNotAvailableError``
    without torch."""
    from townlet.policy.training.strategies.bc.train import load_bc_inputs

    modes = {"bc", "ppo"} if stages is None else {stage.mode for stage in stages}
    bc_cfg = config.training.bc
    bc = None
    needs_bc = "bc" in modes or ("ppo" in modes and config.training.anneal_bc_target == "demos")
    if needs_bc and (data.bc is not None or bc_cfg.manifest is not None):
        bc = load_bc_inputs(data.bc, bc_cfg)
    rollout_spec = None
    if data.ppo is None and data.rollout is not None:
        from townlet.policy.rollout.capture import make_stepper

        info = make_stepper(data.rollout.world).info
        rollout_spec = NetworkSpec(
            map_shape=info.map_shape,
            feature_dim=len(info.feature_names),
            action_dim=info.action_dim,
        )
    return AnnealInputs(
        bc=bc,
        ppo=None if data.ppo is None or "ppo" not in modes else ppo_inputs(data.ppo),
        rollout=data.rollout,
        rollout_spec=rollout_spec,
        label=data.label,
        group=data.group,
    )


def stage_inputs(
    state: AnnealState, stage: AnnealStage, data: AnnealInputs, config: Config
) -> tuple[PPOInputs, float | None]:
    """The PPO data of ``stage``: the loaded replay batches, or a fresh rollout captured with
    the current parameters in the cycle's social stage, with its mean per-agent return."""
    if data.ppo is not None:
        return data.ppo, None
    if data.rollout is None:
        raise ConfigError(f"PPO stage at cycle {stage.cycle} has no dataset and no rollout plan")
    from townlet.policy.rollout import build_rollout_dataset, capture_rollout
    from townlet.policy.rollout_torch import make_network_policy

    plan = data.rollout
    world = plan.world
    social = select_social_stage(config.training, stage.cycle)
    if social is not None:
        world = attrs.evolve(world, social_reward_stage=social)
    assert state.params is not None and state.spec is not None  # see with_network
    seed = stage_seed(state.seed, state.stage_index, Stream.STAGE_CAPTURE)
    seed = rank_seed(seed, data.group.rank)  # each rank its own town; rank 0 the run's
    buffer = capture_rollout(world, make_network_policy(state.params, state.spec), plan.ticks, seed)
    rewards = [float(np.sum(sample.rewards)) for sample in buffer.samples]
    mean_return = float(np.mean(rewards)) if rewards else None
    if data.group.world_size > 1:
        buffer, mean_return = _global_counts(buffer, rewards, data.group)
    dataset = build_rollout_dataset(buffer, batch_size=plan.batch_size)
    return ppo_inputs(dataset), mean_return


def _global_counts(
    buffer: RolloutBuffer, rewards: list[float], group: Collective
) -> tuple[RolloutBuffer, float | None]:
    """``buffer`` with its event counters summed over the ranks, and the mean return of every
    rank's agents (one all-reduce)."""
    from townlet.distributed.group import all_reduce_sum

    events = attrs.asdict(buffer.event_counts)
    sums = all_reduce_sum(group, [*events.values(), sum(rewards), len(rewards)])
    total: dict[str, Any] = {
        name: round(value) if isinstance(events[name], int) else value
        for name, value in zip(events, sums[: len(events)], strict=True)
    }
    mean_return = sums[-2] / sums[-1] if sums[-1] else None
    return attrs.evolve(buffer, event_counts=ReplayEventCounts(**total)), mean_return


def with_network(state: AnnealState, data: AnnealInputs) -> AnnealState:
    """Before the first stage of a rollout run, a fresh network sized for the town (seeded by
    the run seed), so that even the first rollout is captured on-policy."""
    if state.params is not None or data.rollout_spec is None:
        return state
    from townlet.policy.nn.network import init_params

    spec = data.rollout_spec
    return attrs.evolve(state, params=init_params(spec, state.seed), spec=spec)
