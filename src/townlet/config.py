"""Configuration records: every hyperparameter in one visible place.

Each component has its own frozen record (``PPOConfig``, ``BCConfig``, ``AnnealStage``, …); the
root :class:`Config` gathers them. Defaults and bounds follow the original Townlet
(``spec/reference-ppo.md`` §1, ``reference-bc_anneal_promotion.md`` §1). Bounds are checked when a
record is built, so a record that exists is valid. Files are read by :func:`load_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
from attrs import validators as v

SocialRewardStage = Literal["OFF", "C1", "C2", "C3"]
SOCIAL_REWARD_STAGES: tuple[str, ...] = ("OFF", "C1", "C2", "C3")
TrainingSource = Literal["replay", "rollout", "mixed", "bc", "anneal"]
AnnealMode = Literal["bc", "ppo"]


def _unit_interval() -> list[v._ValidatorType[float]]:  # type: ignore[name-defined]
    return [v.ge(0.0), v.le(1.0)]


@attrs.frozen(kw_only=True)
class PPOConfig:
    """PPO hyperparameters (config key ``ppo``).

    ``num_epochs`` counts PPO passes over each batch of fresh rollouts in online training; replay
    training takes its epoch count from the call (as the reference did).
    ``bc_coef`` weights a behaviour-cloning cross-entropy term added to the PPO loss (DESIGN §5.2).
    """

    learning_rate: float = attrs.field(default=3e-4, converter=float, validator=v.gt(0.0))
    clip_param: float = attrs.field(default=0.2, converter=float, validator=_unit_interval())
    value_loss_coef: float = attrs.field(default=0.5, converter=float, validator=v.ge(0.0))
    entropy_coef: float = attrs.field(default=0.01, converter=float, validator=v.ge(0.0))
    num_epochs: int = attrs.field(default=4, validator=[v.instance_of(int), v.ge(1), v.le(64)])
    mini_batch_size: int = attrs.field(default=32, validator=[v.instance_of(int), v.ge(1)])
    gae_lambda: float = attrs.field(default=0.95, converter=float, validator=_unit_interval())
    gamma: float = attrs.field(default=0.99, converter=float, validator=_unit_interval())
    max_grad_norm: float = attrs.field(default=0.5, converter=float, validator=v.ge(0.0))
    value_clip: float = attrs.field(default=0.2, converter=float, validator=_unit_interval())
    advantage_normalization: bool = attrs.field(default=True, validator=v.instance_of(bool))
    num_mini_batches: int = attrs.field(
        default=4, validator=[v.instance_of(int), v.ge(1), v.le(1024)]
    )
    bc_coef: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))


@attrs.frozen(kw_only=True)
class BCConfig:
    """Behaviour-cloning hyperparameters (config key ``training.bc``)."""

    manifest: Path | None = attrs.field(default=None)
    learning_rate: float = attrs.field(default=1e-3, converter=float, validator=v.gt(0.0))
    batch_size: int = attrs.field(default=64, validator=[v.instance_of(int), v.ge(1)])
    epochs: int = attrs.field(default=10, validator=[v.instance_of(int), v.ge(1)])
    weight_decay: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))
    val_fraction: float = attrs.field(
        default=0.1, converter=float, validator=[v.ge(0.0), v.lt(1.0)]
    )
    device: str = attrs.field(default="cpu", validator=v.instance_of(str))


@attrs.frozen(kw_only=True)
class AnnealStage:
    """One stage of the anneal schedule: a BC stage or a PPO stage at a given cycle.

    In PPO stages ``bc_weight`` is the coefficient of the behaviour-cloning term (DESIGN §5.2).
    """

    cycle: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    mode: AnnealMode = attrs.field(default="ppo", validator=v.in_(("bc", "ppo")))
    epochs: int = attrs.field(default=1, validator=[v.instance_of(int), v.ge(1)])
    bc_weight: float = attrs.field(default=1.0, converter=float, validator=_unit_interval())


@attrs.frozen(kw_only=True)
class SocialRewardScheduleEntry:
    """From cycle ``cycle`` on, the social reward stage is ``stage``."""

    cycle: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    stage: SocialRewardStage = attrs.field(validator=v.in_(SOCIAL_REWARD_STAGES))


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """How a training run gets its data and what schedule it follows (config key ``training``)."""

    source: TrainingSource = attrs.field(
        default="replay", validator=v.in_(("replay", "rollout", "mixed", "bc", "anneal"))
    )
    rollout_ticks: int = attrs.field(default=100, validator=[v.instance_of(int), v.ge(0)])
    rollout_auto_seed_agents: bool = attrs.field(default=False, validator=v.instance_of(bool))
    replay_manifest: Path | None = attrs.field(default=None)
    social_reward_stage_override: SocialRewardStage | None = attrs.field(
        default=None, validator=v.optional(v.in_(SOCIAL_REWARD_STAGES))
    )
    social_reward_schedule: tuple[SocialRewardScheduleEntry, ...] = attrs.field(
        default=(), converter=tuple
    )
    bc: BCConfig = attrs.field(factory=BCConfig)
    anneal_schedule: tuple[AnnealStage, ...] = attrs.field(default=(), converter=tuple)
    anneal_accuracy_threshold: float = attrs.field(
        default=0.9, converter=float, validator=_unit_interval()
    )
    anneal_loss_tolerance: float = attrs.field(default=0.10, converter=float, validator=v.ge(0.0))
    anneal_queue_tolerance: float = attrs.field(default=0.15, converter=float, validator=v.ge(0.0))
    critic_warmup_epochs: int = attrs.field(default=1, validator=[v.instance_of(int), v.ge(0)])


@attrs.frozen(kw_only=True)
class PromotionConfig:
    """The promotion gate (config key ``promotion``)."""

    required_passes: int = attrs.field(default=2, validator=[v.instance_of(int), v.ge(1), v.le(10)])
    window_ticks: int = attrs.field(
        default=1000, validator=[v.instance_of(int), v.ge(1), v.le(100_000)]
    )
    allowed_alerts: tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen(kw_only=True)
class Config:
    """The root configuration: one record per component plus the run seed."""

    seed: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    ppo: PPOConfig = attrs.field(factory=PPOConfig)
    training: TrainingConfig = attrs.field(factory=TrainingConfig)
    promotion: PromotionConfig = attrs.field(factory=PromotionConfig)
