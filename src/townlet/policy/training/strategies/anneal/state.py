"""The anneal fold's carry, :class:`AnnealState`, what one stage outputs
(:class:`StageOutput`), and the pure helpers around them: the initial state, per-stage seeds,
the social reward stage of a cycle, the schedule order. Imports without torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from townlet._summary import record_dict, short_repr
from townlet._validators import check_int_arg
from townlet.config import AnnealStage, SocialRewardStage, TrainingConfig
from townlet.dto.policy import AnnealStageResult, BCTrainingResult, PPOTrainingResult
from townlet.errors import ConfigError
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.streams import Stream, stream_seed
from townlet.policy.training.strategies.anneal.flags import AnnealBaselines
from townlet.policy.training.strategies.ppo.summary import AnnealContext

if TYPE_CHECKING:
    from townlet.policy.nn.network import Params
    from townlet.policy.training.strategies.ppo.step import PPOState


@attrs.frozen(kw_only=True, eq=False)
class AnnealState:
    """Everything the next stage depends on.

    ``params``/``spec``: the current network (None before the first stage, when PPO infers it
    from the data). ``ppo_state``: the PPO run carried between consecutive PPO stages (Adam
    moments, counters); None after a BC stage. ``baselines``: the previous PPO stage's final
    epoch. ``last_bc``: the latest BC stage result. ``warmup_pending``: the next PPO stage
    starts with the critic warm-up. ``stage_index``: stages run so far. ``results``: their
    results. ``rollout_returns``: per stage, the mean per-agent reward sum of its fresh rollout
    (None for BC and replay stages). ``stopped``: a BC gate failed. What a stage produced
    beyond that (its telemetry records, its BC record) is its :class:`StageOutput`, not state.
    """

    __repr__ = short_repr
    to_dict = record_dict

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


@attrs.frozen(kw_only=True, eq=False)
class StageOutput:
    """What one stage produced: its ``result``, the telemetry records of its PPO ``epochs``
    (empty for BC) and its ``bc`` run record (None for PPO)."""

    result: AnnealStageResult
    epochs: tuple[PPOTrainingResult, ...] = ()
    bc: BCTrainingResult | None = None

    def __getattr__(self, name: str) -> Any:
        # anneal_stage_step returned the AnnealStageResult itself before #11.
        if name.startswith("__") or name not in attrs.fields_dict(AnnealStageResult):
            raise AttributeError(name)
        warnings.warn(
            f"StageOutput.{name} is deprecated: read StageOutput.result.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(self.result, name)


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


def anneal_context(
    state: AnnealState, stage: AnnealStage, label: str, training: TrainingConfig
) -> AnnealContext:
    """The ``anneal_*`` telemetry context of a PPO ``stage`` run from ``state``."""
    last_bc = state.last_bc
    return AnnealContext(
        cycle=stage.cycle,
        dataset_label=label,
        stage=stage.mode,
        bc_accuracy=None if last_bc is None else last_bc.accuracy,
        bc_threshold=training.anneal_accuracy_threshold,
        bc_passed=True if last_bc is None else bool(last_bc.passed),
        baselines=state.baselines,
        loss_tolerance=training.anneal_loss_tolerance,
        queue_tolerance=training.anneal_queue_tolerance,
    )


def ppo_stage_result(stage: AnnealStage, last: PPOTrainingResult) -> AnnealStageResult:
    """The stage result of a PPO ``stage`` whose final epoch record is ``last``."""
    return AnnealStageResult(
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
