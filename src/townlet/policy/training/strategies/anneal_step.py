"""One anneal stage as a pure step: ``anneal_stage_step(state, stage, data, config)``.

A BC stage clones the demonstrations starting from the current parameters and gates on the
accuracy threshold (validation accuracy when there is a held-out split, ``>=``); a failed gate
keeps the parameters from before the stage (``rolled_back``) and stops the schedule. A PPO stage
continues from the current parameters (DESIGN §5.1) with ``bc_coef = stage.bc_weight`` (§5.2),
the anneal context of the previous PPO stage's baselines, and — right after a BC stage —
``critic_warmup_epochs`` extra value-only epochs first. Its data is a replay dataset or a fresh
rollout captured with the current parameters (a fresh network, seeded by the run seed, when a
run starts with PPO) in the cycle's social reward stage. The baselines
for the next PPO stage come from this stage's final epoch, social counters included (§5.4).

Randomness: every stage derives its seeds from the run seed and the stage index, so a run
resumed from a checkpoint after stage k continues exactly as the uninterrupted run. This module
imports without torch; running a stage needs it (``TorchNotAvailableError``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from townlet._validators import check_int_arg
from townlet.config import AnnealStage, Config, SocialRewardStage, TrainingConfig
from townlet.distributed import LOCAL, Collective, rank_seed
from townlet.dto.policy import AnnealStageResult, BCTrainingResult, PPOTrainingResult
from townlet.errors import ConfigError
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay.dataset import InMemoryReplayDataset, ReplayDataset
from townlet.policy.replay.metrics import ReplayEventCounts
from townlet.policy.replay.sample import ReplaySample
from townlet.policy.streams import Stream, stream_seed
from townlet.policy.training.strategies.anneal_flags import AnnealBaselines, update_baselines
from townlet.policy.training.strategies.ppo_summary import AnnealContext
from townlet.world import WorldConfig

if TYPE_CHECKING:
    from townlet.policy.nn.network import Params
    from townlet.policy.rollout.buffer import RolloutBuffer
    from townlet.policy.training.strategies.ppo_step import PPOState

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
class AnnealState:
    """Everything the next stage depends on.

    ``params``/``spec``: the current network (None before the first stage, when PPO infers it
    from the data). ``ppo_state``: the PPO run carried between consecutive PPO stages (Adam
    moments, counters); None after a BC stage. ``baselines``: the previous PPO stage's final
    epoch. ``last_bc``: the latest BC stage result. ``warmup_pending``: the next PPO stage
    starts with the critic warm-up. ``stage_index``: stages run so far. ``results``: their
    results. ``rollout_returns``: per stage, the mean per-agent reward sum of its fresh rollout
    (None for BC and replay stages). ``stopped``: a BC gate failed. ``last_epochs``/
    ``last_bc_result``: what the latest stage produced (its telemetry records, its BC record),
    for the I/O around the fold.
    """

    seed: int = attrs.field(validator=attrs.validators.ge(0))
    params: Params | None = None
    spec: NetworkSpec | None = None
    ppo_state: PPOState | None = None
    baselines: AnnealBaselines = attrs.field(factory=AnnealBaselines)
    last_bc: AnnealStageResult | None = None
    warmup_pending: bool = False
    stage_index: int = 0
    results: tuple[AnnealStageResult, ...] = ()
    rollout_returns: tuple[float | None, ...] = ()
    stopped: bool = False
    last_epochs: tuple[PPOTrainingResult, ...] = ()
    last_bc_result: BCTrainingResult | None = None


def init_anneal_state(
    seed: int = 0, *, params: Params | None = None, spec: NetworkSpec | None = None
) -> AnnealState:
    """A state before the first stage, optionally starting from trained ``params`` of ``spec``.

    Raises ``ConfigError`` for a negative seed or ``params`` without ``spec``.
    """
    check_int_arg("seed", seed, 0)
    if params is not None and spec is None:
        raise ConfigError("init params need their network spec (spec=...)")
    return AnnealState(seed=seed, params=params, spec=spec)


def stage_seed(seed: int, stage_index: int, stream: Stream) -> int:
    """A 31-bit seed of ``stream`` (``Stream.STAGE_BC`` or ``STAGE_CAPTURE``) for stage
    ``stage_index`` of a run seeded ``seed``."""
    return stream_seed(seed, stream, stage_index)


def select_social_stage(training: TrainingConfig, cycle: int) -> SocialRewardStage | None:
    """The social reward stage of ``cycle`` (reference §7): ``social_reward_stage_override`` as
    the default, overwritten by every schedule entry with ``entry.cycle <= cycle`` in cycle
    order (the last one wins; equal cycles keep list order). None when neither applies."""
    stage: SocialRewardStage | None = training.social_reward_stage_override
    for entry in sorted(training.social_reward_schedule, key=lambda e: e.cycle):
        if cycle >= entry.cycle:
            stage = entry.stage
    return stage


def sorted_schedule(schedule: Sequence[AnnealStage]) -> tuple[AnnealStage, ...]:
    """The schedule stably sorted by cycle (the order the stages run in)."""
    return tuple(sorted(schedule, key=lambda stage: stage.cycle))


def check_schedule(schedule: Sequence[AnnealStage], data: AnnealData, config: Config) -> None:
    """Refuse, before any stage runs, what would fail midway.

    Raises ``ConfigError``: an empty schedule; a BC stage without demonstrations (no
    ``data.bc`` and no ``training.bc.manifest``); a PPO stage without a dataset or rollout plan.
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
    if "ppo" in modes and data.ppo is None and data.rollout is None:
        raise ConfigError(
            "Replay manifest required for PPO stages in anneal: pass a replay dataset "
            "(--manifest/--capture-dir), a rollout source (--rollout-ticks), or set "
            "training.replay_manifest"
        )


def anneal_stage_step(
    state: AnnealState, stage: AnnealStage, data: AnnealData, config: Config
) -> tuple[AnnealState, AnnealStageResult]:
    """Run one anneal stage from ``state``; return the next state and the stage's result.

    See the module docstring for what a BC and a PPO stage do. ``state`` is not modified.
    Raises ``ConfigError`` when the stage lacks its data, ``TorchNotAvailableError`` without
    torch, and whatever ``train_bc``/``train_ppo``/capture raise for bad data.
    """
    if stage.mode == "bc":
        return _bc_stage(state, stage, data, config)
    return _ppo_stage(state, stage, data, config)


def _bc_stage(
    state: AnnealState, stage: AnnealStage, data: AnnealData, config: Config
) -> tuple[AnnealState, AnnealStageResult]:
    from townlet.policy.training.strategies.bc import train_bc

    run = train_bc(
        data.bc,
        cfg=config.training.bc,
        seed=stage_seed(state.seed, state.stage_index, Stream.STAGE_BC),
        init=state.params,
        spec=state.spec,
        group=data.group,
    )
    gate = run.result.val_accuracy
    accuracy = run.result.accuracy if gate is None else gate
    threshold = config.training.anneal_accuracy_threshold
    passed = accuracy >= threshold
    result = AnnealStageResult(
        duration_sec=run.result.duration_sec,
        cycle=float(stage.cycle),
        mode="bc",
        accuracy=min(1.0, max(0.0, accuracy)),
        loss=run.result.val_loss if gate is not None else run.result.loss,
        threshold=threshold,
        passed=passed,
        bc_weight=stage.bc_weight,
        rolled_back=not passed,
    )
    common: dict[str, Any] = {
        "stage_index": state.stage_index + 1,
        "results": (*state.results, result),
        "last_bc": result,
        "last_epochs": (),
        "last_bc_result": run.result,
        "rollout_returns": (*state.rollout_returns, None),
    }
    if not passed:  # keep the parameters from before the stage
        return attrs.evolve(state, stopped=True, **common), result
    new = attrs.evolve(
        state, params=run.params, spec=run.spec, ppo_state=None, warmup_pending=True, **common
    )
    return new, result


def _stage_dataset(
    state: AnnealState, stage: AnnealStage, data: AnnealData, config: Config
) -> tuple[PPOData, float | None]:
    if data.ppo is not None:
        return data.ppo, None
    if data.rollout is None:
        raise ConfigError(f"PPO stage at cycle {stage.cycle} has no dataset and no rollout plan")
    from townlet.policy.rollout import build_rollout_dataset, capture_rollout

    plan = data.rollout
    world = plan.world
    social = select_social_stage(config.training, stage.cycle)
    if social is not None:
        world = attrs.evolve(world, social_reward_stage=social)
    from townlet.policy.rollout_torch import make_network_policy

    assert state.params is not None and state.spec is not None  # see _with_network
    seed = stage_seed(state.seed, state.stage_index, Stream.STAGE_CAPTURE)
    policy = make_network_policy(state.params, state.spec)
    buffer = capture_rollout(world, policy, plan.ticks, rank_seed(seed, data.group.rank))
    rewards = [float(np.sum(sample.rewards)) for sample in buffer.samples]
    mean_return = float(np.mean(rewards)) if rewards else None
    if data.group.world_size > 1:
        buffer, mean_return = _global_counts(buffer, rewards, data.group)
    return build_rollout_dataset(buffer, batch_size=plan.batch_size), mean_return


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
    counts = ReplayEventCounts(**total)
    mean_return = sums[-2] / sums[-1] if sums[-1] else None
    return attrs.evolve(buffer, event_counts=counts), mean_return


def _with_network(state: AnnealState, data: AnnealData) -> AnnealState:
    """Before the first stage of a rollout run, a fresh network sized for the town (seeded by
    the run seed), so that even the first rollout is captured on-policy."""
    if state.params is not None or data.ppo is not None or data.rollout is None:
        return state
    from townlet.policy.nn.network import init_params
    from townlet.policy.rollout.capture import make_stepper

    info = make_stepper(data.rollout.world).info
    spec = NetworkSpec(
        map_shape=info.map_shape, feature_dim=len(info.feature_names), action_dim=info.action_dim
    )
    return attrs.evolve(state, params=init_params(spec, state.seed), spec=spec)


def _ppo_start(state: AnnealState) -> dict[str, Any]:
    """``train_ppo`` keyword arguments: continue the carried PPO run, or start from the current
    parameters with fresh Adam moments (after BC), or from scratch."""
    if state.ppo_state is not None:
        return {"state": state.ppo_state}
    if state.params is not None:
        return {"init": state.params, "spec": state.spec}
    return {}


def _ppo_stage(
    state: AnnealState, stage: AnnealStage, data: AnnealData, config: Config
) -> tuple[AnnealState, AnnealStageResult]:
    from townlet.policy.training.strategies.ppo import train_ppo

    training = config.training
    state = _with_network(state, data)
    dataset, rollout_return = _stage_dataset(state, stage, data, config)
    last_bc = state.last_bc
    context = AnnealContext(
        cycle=stage.cycle,
        dataset_label=data.label,
        stage=stage.mode,
        bc_accuracy=None if last_bc is None else last_bc.accuracy,
        bc_threshold=training.anneal_accuracy_threshold,
        bc_passed=True if last_bc is None else bool(last_bc.passed),
        baselines=state.baselines,
        loss_tolerance=training.anneal_loss_tolerance,
        queue_tolerance=training.anneal_queue_tolerance,
    )
    warmup = training.critic_warmup_epochs if state.warmup_pending else 0
    run = train_ppo(
        dataset,
        cfg=attrs.evolve(config.ppo, bc_coef=stage.bc_weight),
        epochs=stage.epochs + warmup,
        seed=state.seed,
        anneal_context=context,
        value_only_epochs=warmup,
        group=data.group,
        own_data=data.ppo is None,
        **_ppo_start(state),
    )
    last = run.result
    result = AnnealStageResult(
        duration_sec=last.duration_sec,
        cycle=float(stage.cycle),
        mode="ppo",
        bc_weight=stage.bc_weight,
        loss_total=last.loss_total,
        loss_policy=last.loss_policy,
        loss_value=last.loss_value,
        queue_conflict_events=last.queue_conflict_events,
        queue_conflict_intensity_sum=last.queue_conflict_intensity_sum,
        anneal_loss_flag=last.anneal_loss_flag,
        anneal_queue_flag=last.anneal_queue_flag,
        anneal_intensity_flag=last.anneal_intensity_flag,
    )
    new = attrs.evolve(
        state,
        params=run.state.params,
        spec=run.state.spec,
        ppo_state=run.state,
        baselines=update_baselines(state.baselines, last),
        warmup_pending=False,
        stage_index=state.stage_index + 1,
        results=(*state.results, result),
        last_epochs=run.results,
        last_bc_result=None,
        rollout_returns=(*state.rollout_returns, rollout_return),
    )
    return new, result
