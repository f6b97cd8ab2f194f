"""Configuration records: every hyperparameter in one visible place.

Each component has its own frozen record (``PPOConfig``, ``BCConfig``, ``AnnealStage``, …); the
root :class:`Config` gathers them. Defaults and bounds follow the original Townlet
(``spec/reference-ppo.md`` §1, ``reference-bc_anneal_promotion.md`` §1). Bounds are checked when a
record is built, so a record that exists is valid; a bad value raises
:class:`~townlet.errors.ConfigError` naming the field (``clip_param: 1.5 is not in [0, 1]``).
Files are read by :func:`load_config` (TOML or YAML) and mappings by :func:`config_from_dict`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from townlet._config_fields import bool_field as _bool
from townlet._config_fields import float_field as _float
from townlet._config_fields import help_metadata as _help
from townlet._config_fields import int_field as _int
from townlet._config_fields import one_of as _one_of
from townlet._config_fields import str_field as _str
from townlet._config_fields import unit_field as _unit
from townlet._config_io import parse_config_file
from townlet.errors import ConfigError
from townlet.world.config import WorldConfig

SocialRewardStage = Literal["OFF", "C1", "C2", "C3"]
SOCIAL_REWARD_STAGES: tuple[str, ...] = ("OFF", "C1", "C2", "C3")
TrainingSource = Literal["replay", "rollout", "mixed", "bc", "anneal"]
TRAINING_SOURCES: tuple[str, ...] = ("replay", "rollout", "mixed", "bc", "anneal")
AnnealMode = Literal["bc", "ppo"]
AnnealBCTarget = Literal["rollout", "demos"]
ANNEAL_BC_TARGETS: tuple[str, ...] = ("rollout", "demos")
CompileMode = Literal["none", "inductor", "cudagraph", "auto"]
COMPILE_MODES: tuple[str, ...] = ("none", "inductor", "cudagraph", "auto")
_COMPILE_HELP = (
    "Minibatch update: none (eager), inductor (torch.compile), cudagraph (CUDA graph capture, "
    "CUDA only) or auto (cudagraph on CUDA, else none); eager with one warning where unavailable."
)


def _optional_path(value: str | Path | None) -> Path | None:
    if value is None or isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value)
    raise ConfigError(f"expected a path string, got {value!r}")


def _str_tuple(value: str | Iterable[str]) -> tuple[str, ...]:
    # The reference accepted a bare string as a one-element tuple.
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"expected a list of strings, got item {item!r}")
    return items


@attrs.frozen(kw_only=True)
class PPOConfig:
    """PPO hyperparameters (config key ``ppo``).

    ``num_epochs`` counts PPO passes over each batch of fresh rollouts in online training; replay
    training takes its epoch count from the call (as the reference did).
    ``bc_coef`` weights a behaviour-cloning cross-entropy term added to the PPO loss (DESIGN §5.2).
    ``reference_compat`` makes replay PPO (``train_ppo``) cut minibatches in the reference's order
    and size the policy head as it did (``townlet.policy.training.strategies.minibatch_order``).
    """

    learning_rate: float = _float(3e-4, gt=0.0, help="Adam step size for PPO updates.")
    clip_param: float = _unit(0.2, help="PPO surrogate clip range (epsilon).")
    value_loss_coef: float = _float(0.5, ge=0.0, help="Weight of the value loss in the total loss.")
    entropy_coef: float = _float(
        0.01, ge=0.0, help="Weight of the entropy bonus (subtracted from the loss)."
    )
    num_epochs: int = _int(
        4, ge=1, le=64, help="PPO passes over each batch of fresh rollouts (online training)."
    )
    mini_batch_size: int = _int(
        32, ge=1, help="Largest minibatch, in transitions (see num_mini_batches)."
    )
    gae_lambda: float = _unit(0.95, help="GAE lambda.")
    gamma: float = _unit(0.99, help="Discount factor.")
    max_grad_norm: float = _float(
        0.5,
        ge=0.0,
        help="Global gradient-norm clip; 0 disables clipping (the norm is still reported).",
    )
    value_clip: float = _unit(
        0.2, help="Clip range of the value prediction around the old value; 0 disables."
    )
    advantage_normalization: bool = _bool(
        True, help="Normalise advantages over each batch to mean 0, std 1."
    )
    num_mini_batches: int = _int(
        4,
        ge=1,
        le=1024,
        help="Minibatches per batch: size = min(mini_batch_size, transitions // this).",
    )
    bc_coef: float = _float(
        0.0,
        ge=0.0,
        help="Weight of the behaviour-cloning cross-entropy term added to the PPO loss.",
    )
    reference_compat: bool = _bool(
        False,
        help="Replay PPO as the original Townlet: its fixed-default-seed minibatch order and "
        "action_dim = max action + 1 (reproduces its golden run).",
    )
    compile: CompileMode = attrs.field(
        default="none", validator=_one_of(COMPILE_MODES), metadata=_help(_COMPILE_HELP)
    )


@attrs.frozen(kw_only=True)
class BCConfig:
    """Behaviour-cloning hyperparameters (config key ``training.bc``).

    ``val_fraction`` of the frames (a seeded split) is held out for validation (DESIGN §5.6).
    """

    manifest: Path | None = attrs.field(
        default=None,
        converter=_optional_path,
        metadata=_help("Manifest of the demonstrations to clone."),
    )
    learning_rate: float = _float(1e-3, gt=0.0, help="Adam step size for behaviour cloning.")
    batch_size: int = _int(64, ge=1, help="Frames per BC minibatch.")
    epochs: int = _int(10, ge=1, help="Passes over the BC training frames.")
    weight_decay: float = _float(
        0.0, ge=0.0, help="L2 penalty added to the gradient (torch Adam's weight_decay, not AdamW)."
    )
    val_fraction: float = _float(
        0.1,
        ge=0.0,
        lt=1.0,
        help="Share of frames held out (seeded split) for validation accuracy and loss.",
    )
    device: str = _str(
        "cpu", help='Torch device for BC training ("cpu", "cuda", "cuda:1", ..., or "auto").'
    )
    compile: CompileMode = attrs.field(
        default="none", validator=_one_of(COMPILE_MODES), metadata=_help(_COMPILE_HELP)
    )


@attrs.frozen(kw_only=True)
class AnnealStage:
    """One stage of the anneal schedule: a BC stage or a PPO stage at a given cycle.

    In PPO stages ``bc_weight`` is the coefficient of the behaviour-cloning term (DESIGN §5.2).
    """

    cycle: int = _int(0, ge=0, help="Anneal cycle this stage belongs to.")
    mode: AnnealMode = attrs.field(
        default="ppo",
        validator=_one_of(("bc", "ppo")),
        metadata=_help("Stage kind: behaviour cloning or PPO."),
    )
    epochs: int = _int(1, ge=1, help="Epochs the stage trains for.")
    bc_weight: float = _unit(1.0, help="In PPO stages, the coefficient of the BC term in the loss.")


@attrs.frozen(kw_only=True)
class SocialRewardScheduleEntry:
    """From cycle ``cycle`` on, the social reward stage is ``stage``."""

    cycle: int = _int(0, ge=0, help="First cycle at which this stage applies.")
    stage: SocialRewardStage = attrs.field(
        validator=_one_of(SOCIAL_REWARD_STAGES),
        metadata=_help("Social reward stage from that cycle on."),
    )


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """How a training run gets its data and what schedule it follows (config key ``training``).

    ``anneal_loss_tolerance`` and ``anneal_queue_tolerance`` are the guardrail tolerances the
    reference hard-coded (0.10 and 0.15); ``critic_warmup_epochs`` PPO epochs train only the value
    head after a BC warm start. ``anneal_bc_target`` is what a PPO stage's ``bc_weight`` clones:
    ``"rollout"`` (the default, as before) the actions of the stage's own data — on fresh rollouts
    that is the current policy's own choices, so it only slows the policy down;
    ``"demos"`` a minibatch of the BC demonstrations beside every PPO minibatch (real BC
    regularisation towards the expert; docs/anneal.md).
    """

    source: TrainingSource = attrs.field(
        default="replay",
        validator=_one_of(TRAINING_SOURCES),
        metadata=_help("Where training data comes from, or which schedule runs."),
    )
    rollout_ticks: int = _int(100, ge=0, help="World ticks captured per rollout for online PPO.")
    rollout_auto_seed_agents: bool = _bool(
        False, help="Seed default agents into an empty world (reference key; not read yet)."
    )
    replay_manifest: Path | None = attrs.field(
        default=None,
        converter=_optional_path,
        metadata=_help("Replay manifest for PPO on stored data (and anneal PPO stages)."),
    )
    social_reward_stage_override: SocialRewardStage | None = attrs.field(
        default=None,
        validator=_one_of(SOCIAL_REWARD_STAGES, optional=True),
        metadata=_help("Social reward stage used until a schedule entry applies."),
    )
    social_reward_schedule: tuple[SocialRewardScheduleEntry, ...] = attrs.field(
        default=(),
        converter=tuple,
        metadata=_help("Social reward stage per cycle; the last entry with cycle <= current wins."),
    )
    bc: BCConfig = attrs.field(factory=BCConfig)
    anneal_schedule: tuple[AnnealStage, ...] = attrs.field(
        default=(),
        converter=tuple,
        metadata=_help("The BC and PPO stages of an anneal run."),
    )
    anneal_accuracy_threshold: float = _unit(
        0.9, help="BC accuracy a BC stage needs to pass (inclusive)."
    )
    anneal_loss_tolerance: float = _float(
        0.10, ge=0.0, help="Relative loss drift that raises the anneal loss flag."
    )
    anneal_queue_tolerance: float = _float(
        0.15, ge=0.0, help="Relative drop in queue conflicts that raises the queue/intensity flags."
    )
    critic_warmup_epochs: int = _int(
        1, ge=0, help="PPO epochs that train only the value head after a BC warm start."
    )
    anneal_bc_target: AnnealBCTarget = attrs.field(
        default="rollout",
        validator=_one_of(ANNEAL_BC_TARGETS),
        metadata=_help(
            "What a PPO stage's bc_weight clones: 'rollout' (the stage data's own actions) or "
            "'demos' (a minibatch of the BC demonstrations per PPO minibatch)."
        ),
    )


@attrs.frozen(kw_only=True)
class PromotionConfig:
    """The promotion gate (config key ``promotion``)."""

    required_passes: int = _int(
        2, ge=1, le=10, help="Consecutive PASS evaluations before a candidate is ready."
    )
    window_ticks: int = _int(
        1000,
        ge=1,
        le=100_000,
        help="Stability-monitor window in ticks (reference key; not read by townlet yet).",
    )
    allowed_alerts: tuple[str, ...] = attrs.field(
        default=(),
        converter=_str_tuple,
        metadata=_help("Runtime alerts that do not fail a window (reference key; not read yet)."),
    )


@attrs.frozen(kw_only=True)
class Config:
    """The root configuration: one record per component plus the run seed."""

    seed: int = _int(
        0, ge=0, help="Run seed: network init, shuffles, minibatches and the world derive from it."
    )
    ppo: PPOConfig = attrs.field(factory=PPOConfig)
    training: TrainingConfig = attrs.field(factory=TrainingConfig)
    promotion: PromotionConfig = attrs.field(factory=PromotionConfig)
    world: WorldConfig = attrs.field(factory=WorldConfig)


def config_from_dict(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    """Build a :class:`Config` from a mapping (as parsed from TOML/YAML/JSON).

    Missing keys take their defaults. Raises :class:`ConfigError` with one message that starts
    with ``source`` and lists every problem as ``key.path: what is wrong`` (unknown keys come with
    a did-you-mean suggestion).
    """
    from townlet.dto.convert import from_dict

    return from_dict(Config, data, error=ConfigError, context=source)


def load_config(path: str | Path) -> Config:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file into a :class:`Config`.

    Raises :class:`ConfigError` naming the file for a missing or unparseable file and for every
    invalid key (see :func:`config_from_dict`).
    """
    data = parse_config_file(Path(path))
    return config_from_dict(data, source=str(path))
