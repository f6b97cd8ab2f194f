"""Online PPO on a Gymnasium environment: collect ``num_envs × rollout_steps`` transitions with
the current parameters, run ``cfg.num_epochs`` passes of minibatch updates on them, repeat until
``total_steps`` environment steps; one telemetry record per update.

This module imports without torch (calling :func:`train_ppo_online` without it raises
:class:`~townlet.errors.TorchNotAvailableError`). The computing pieces live in
:mod:`~townlet.policy.training.strategies.ppo.collect` (collection, GAE with the truncation
bootstrap) and :mod:`~townlet.policy.training.strategies.ppo.online_step` (the update fold).

CPU defaults: the networks that fit these environments (64-64 MLPs) do too little work per
kernel for a thread pool, so a run pins torch to ``threads=1`` intra-op thread and puts the
previous setting back when it ends; ``threads=None`` leaves torch's setting alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from townlet._summary import record_dict, short_repr
from townlet._validators import check_int_arg
from townlet.config import PPOConfig
from townlet.distributed import LOCAL, Collective, rank_seed
from townlet.dto.policy import PPOTrainingResult
from townlet.errors import ConfigError
from townlet.policy.nn.spec import Activation, CriticKind, InitScheme, NetworkSpec
from townlet.policy.training.fold import Sink, run_fold, run_sinks
from townlet.policy.training.strategies.ppo.train import require_torch

if TYPE_CHECKING:
    import torch

    from townlet.envs.gymnasium_adapter import GymnasiumSource
    from townlet.policy.nn.network import Params
    from townlet.policy.training.online_resume import OnlineStart
    from townlet.policy.training.strategies.ppo.start import Init
    from townlet.policy.training.strategies.ppo.step import PPOState

EnvSpec = str | Callable[[], Any]
"""``"gymnasium:<id>"``, a bare Gymnasium id, or a zero-argument environment factory."""

UpdateCallback = Callable[[int, PPOTrainingResult], None]
"""``progress(update, record)``: called after each update (1-based) with its record."""


def _int_at_least(low: int) -> Callable[[Any, Any, Any], None]:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        check_int_arg(attribute.name, value, low)

    return check


def _threads(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None:
        check_int_arg(attribute.name, value, 1)


@attrs.frozen(kw_only=True)
class OnlinePPOConfig:
    """The settings of an online run besides PPO's own (``PPOConfig``): at least
    ``total_steps`` environment steps, in updates of ``rollout_steps`` steps of ``num_envs``
    copies; the network (``hidden_dim``, ``activation``, ``weight_init``, ``critic`` — a
    checkpoint given as ``init`` brings its own); ``device``; ``threads`` torch threads during
    the run (None leaves torch's setting)."""

    total_steps: int = attrs.field(validator=_int_at_least(1))
    num_envs: int = attrs.field(default=8, validator=_int_at_least(1))
    rollout_steps: int = attrs.field(default=256, validator=_int_at_least(1))
    hidden_dim: int = attrs.field(default=64, validator=_int_at_least(1))
    activation: Activation = "tanh"
    weight_init: InitScheme = "orthogonal"
    critic: CriticKind = "separate"
    device: str = "cpu"
    threads: int | None = attrs.field(default=1, validator=_threads)

    @property
    def updates(self) -> int:
        """``ceil(total_steps / (num_envs · rollout_steps))``."""
        return math.ceil(self.total_steps / (self.num_envs * self.rollout_steps))


@attrs.frozen(kw_only=True, eq=False)
class OnlineTrainResult:
    """An online PPO run.

    ``state`` is the final :class:`~townlet.policy.training.strategies.ppo.step.PPOState`
    (``params``/``spec`` are shortcuts to it); ``history`` holds one telemetry record per update;
    ``env_steps`` the environment steps taken (updates × num_envs × rollout_steps, so at least
    ``total_steps``); ``wall_seconds`` the run's wall time; ``episode_returns`` /
    ``episode_lengths`` every episode that ended during training, in order.
    """

    __repr__ = short_repr
    to_dict = record_dict

    state: PPOState
    history: tuple[PPOTrainingResult, ...]
    env_id: str
    env_steps: int
    wall_seconds: float
    episode_returns: tuple[float, ...]
    episode_lengths: tuple[int, ...]

    @property
    def params(self) -> Params:
        """The final network parameters."""
        return self.state.params

    @property
    def spec(self) -> NetworkSpec:
        """The network's shape."""
        return self.state.spec


def gym_env_id(env_spec: str) -> str:
    """The Gymnasium id of ``"gymnasium:<id>"`` (a bare id is taken as it is). Raises
    ``ConfigError`` for an empty id."""
    env_id = env_spec.removeprefix("gymnasium:")
    if not env_id:
        raise ConfigError(f"env must be 'gymnasium:<id>', got {env_spec!r}")
    return env_id


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, restoring the previous count
    afterwards; ``None`` leaves torch's setting as it is."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int_arg("threads", threads, 1))
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(previous)


def make_online_source(env_spec: EnvSpec, num_envs: int) -> GymnasiumSource:
    """``num_envs`` copies of ``env_spec`` as a :class:`GymnasiumSource`. Raises
    :class:`~townlet.errors.RolloutError` for an unknown id or unsupported spaces."""
    from townlet.envs.gymnasium_adapter import make_gymnasium_source

    env = gym_env_id(env_spec) if isinstance(env_spec, str) else env_spec
    return make_gymnasium_source(env, num_envs=num_envs)


def _initial_state(
    source: GymnasiumSource,
    seed: int,
    spec: NetworkSpec,
    init: Init | None,
    device: str | torch.device,
) -> PPOState:
    from townlet.policy.nn.adam import adam_init
    from townlet.policy.training.strategies.ppo import start
    from townlet.policy.training.strategies.ppo.step import PPOState

    shape = start.DataShape(
        map_shape=(0, 0, 0),
        feature_dim=source.observation_dim,
        action_dim=source.action_dim,
        max_action=source.action_dim - 1,
    )
    net, params = start.initial_params(
        shape,
        label=source.env_id,
        seed=seed,
        init=init,
        # A checkpoint brings its own spec; bare parameters must fit the requested one.
        spec=spec if init is None or isinstance(init, Mapping) else None,
        device=device,
    )
    return PPOState(spec=net, params=params, adam_state=adam_init(params), seed=seed)


def _settings(
    online: OnlinePPOConfig | None,
    total_steps: int | None,
    num_envs: int | None,
    rollout_steps: int | None,
    legacy: dict[str, Any],
) -> OnlinePPOConfig:
    """The run's :class:`OnlinePPOConfig`: ``online``, or one built from the separate
    arguments that ``train_ppo_online`` took before the record existed."""
    separate = {
        "total_steps": total_steps,
        "num_envs": num_envs,
        "rollout_steps": rollout_steps,
        **legacy,
    }
    given = {key: value for key, value in separate.items() if value is not None}
    if online is not None:
        if given:
            raise ConfigError(f"pass online= or the separate settings, not both: {sorted(given)}")
        return online
    if total_steps is None:
        raise ConfigError("train_ppo_online needs total_steps (or online=OnlinePPOConfig(...))")
    unknown = sorted(set(legacy) - set(attrs.fields_dict(OnlinePPOConfig)))
    if unknown:
        raise TypeError(f"train_ppo_online() got unexpected keyword arguments {unknown}")
    return OnlinePPOConfig(**{**given, **legacy})


def train_ppo_online(
    env_spec: EnvSpec,
    total_steps: int | None = None,
    num_envs: int | None = None,
    rollout_steps: int | None = None,
    cfg: PPOConfig | None = None,
    seed: int = 0,
    *,
    online: OnlinePPOConfig | None = None,
    init: Init | None = None,
    log_path: str | Path | None = None,
    log_frequency: int = 1,
    max_log_entries: int | None = None,
    progress: UpdateCallback | None = None,
    clock: Callable[[], float] = time.perf_counter,
    group: Collective = LOCAL,
    sinks: Sequence[Sink] = (),
    start: OnlineStart | None = None,
    **legacy: Any,
) -> OnlineTrainResult:
    """Train PPO online on ``env_spec`` with the settings ``online`` (an
    :class:`OnlinePPOConfig`; the older separate arguments ``total_steps``, ``num_envs``,
    ``rollout_steps`` and the keywords ``hidden_dim``, ``activation``, ``weight_init``,
    ``critic``, ``device``, ``threads`` still build one).

    Each update collects ``rollout_steps`` steps of ``num_envs`` copies (one batched forward
    pass per step), computes GAE (truncated episodes bootstrapped from ``V(s_final)``), and runs
    one :func:`~townlet.policy.training.strategies.ppo.epoch.ppo_epoch` of ``cfg.num_epochs``
    passes of minibatches of ``cfg.mini_batch_size`` rows; ``online.updates`` updates in all,
    folded by :func:`~townlet.policy.training.fold.run_fold`. The network is ``hidden_dim``
    wide with ``activation``, ``weight_init`` and ``critic`` (by default a separate value
    trunk, as Stable-Baselines3's MLP policy), unless ``init`` (parameters, a ``Checkpoint`` or
    a checkpoint path, e.g. from BC) supplies one — a checkpoint's spec wins. Copy k resets
    with seed ``seed + k``; parameters, actions and minibatches derive from ``seed``: the same
    seed gives the same records (``epoch_duration_sec`` apart). With ``log_path`` every
    ``log_frequency``-th update is appended as a telemetry 1.2 line, rotating after
    ``max_log_entries`` lines as ``train_ppo`` does. ``group`` (under torchrun,
    :mod:`townlet.distributed`): every rank steps its own ``num_envs`` copies (reset from its
    rank seed) and trains on them, gradients averaged, so an update takes
    ``num_envs · rollout_steps`` steps per rank; ``total_steps`` is the global budget; rank 0
    alone writes ``log_path``.

    ``sinks`` are extra fold sinks (e.g. the checkpoint sink of
    :func:`~townlet.policy.training.resume.checkpoint_sink` with ``kind="ppo_online"``), run
    after the telemetry sink and before ``progress``. ``start`` (from
    :func:`~townlet.policy.training.resume.load_resume_point`) continues an interrupted run:
    its state replaces ``init``, the copies are replayed to where they were (see
    :mod:`~townlet.policy.training.online_resume`) and the run ends as the uninterrupted one.

    Raises: ``TorchNotAvailableError`` without torch; ``ConfigError`` for bad numbers, both
    ``online`` and separate settings, or an env spec that is not ``gymnasium:<id>``;
    ``RolloutError`` for an unknown environment, a non-``Discrete`` action space or a non-flat
    observation space; ``CheckpointError`` for an ``init`` that does not fit;
    ``NonFiniteTrainingError`` when training diverges.
    """
    require_torch("train_ppo_online")
    from townlet.policy.nn.device import resolve_device

    cfg = PPOConfig() if cfg is None else cfg
    settings = _settings(online, total_steps, num_envs, rollout_steps, legacy)
    check_int_arg("seed", seed, 0)
    device = resolve_device(settings.device)
    log_sinks = run_sinks(
        log_path=log_path if group.is_root else None,
        log_frequency=log_frequency,
        max_log_entries=max_log_entries,
        progress=None,
        record=lambda out: out[0],
        start=0 if start is None else start.done,
    )
    # Progress last: when update k is reported, its checkpoint (if any) is on disk.
    progress_sinks = run_sinks(
        log_path=None,
        log_frequency=1,
        max_log_entries=None,
        progress=progress,
        record=lambda out: out[0],
    )
    if start is not None and group.world_size > 1:
        raise ConfigError("resuming an online run under torchrun is not supported")
    with torch_threads(settings.threads):
        source = make_online_source(env_spec, settings.num_envs)
        try:
            spec = NetworkSpec(
                feature_dim=source.observation_dim,
                action_dim=source.action_dim,
                hidden_dim=settings.hidden_dim,
                activation=settings.activation,
                init=settings.weight_init,
                critic=settings.critic,
            )
            state = (
                _initial_state(source, seed, spec, init, device) if start is None else start.state
            )
            all_sinks = [*log_sinks, *sinks, *progress_sinks]
            return _run(source, state, cfg, settings, all_sinks, clock, group, start)
        finally:
            source.close()


def _run(
    source: GymnasiumSource,
    state: PPOState,
    cfg: PPOConfig,
    settings: OnlinePPOConfig,
    sinks: Sequence[Sink],
    clock: Callable[[], float],
    group: Collective,
    resume: OnlineStart | None = None,
) -> OnlineTrainResult:
    """The fold over updates; the environments are the only imperative state, held here."""
    from townlet.distributed.group import all_gather_objects
    from townlet.distributed.parallel import make_data_parallel
    from townlet.policy.training.online_resume import replay_environments
    from townlet.policy.training.strategies.ppo.compiled import make_ppo_update
    from townlet.policy.training.strategies.ppo.online_step import online_update

    parallel = make_data_parallel(group, shared_data=False)
    # One minibatch update for the run: a compiled one keeps its variants across updates.
    minibatch_update = make_ppo_update(cfg.compile)
    per_update = settings.num_envs * settings.rollout_steps * group.world_size
    updates = math.ceil(settings.total_steps / per_update)  # settings.updates on one process
    start = clock()

    def step(carry: tuple[PPOState, Any], update: int) -> tuple[tuple[PPOState, Any], Any]:
        current, observations = carry
        current, observations, record, traj = online_update(
            current,
            source,
            observations,
            cfg,
            update=update,
            steps=settings.rollout_steps,
            clock=clock,
            parallel=parallel,
            minibatch_update=minibatch_update,
        )
        return (current, observations), (record, traj)

    seed = rank_seed(state.seed, group.rank)
    done = 0
    history: list[PPOTrainingResult] = []
    returns: list[float] = []
    lengths: list[int] = []
    if resume is None:
        observations = source.reset(seed)
    else:
        observations = replay_environments(source, seed, resume)
        done, history = resume.done, [update.record for update in resume.updates]
        returns = [r for update in resume.updates for r in update.episode_returns]
        lengths = [n for update in resume.updates for n in update.episode_lengths]
    carry = (state, observations)
    (state, _), outs = run_fold(step, carry, range(done + 1, updates + 1), sinks=sinks, start=done)
    # Every rank's episodes, in rank order (on one process: its own).
    episodes = all_gather_objects(
        group,
        (
            [*returns, *(r for _, traj in outs for r in traj.episode_returns)],
            [*lengths, *(n for _, traj in outs for n in traj.episode_lengths)],
        ),
    )
    return OnlineTrainResult(
        state=state,
        history=(*history, *(record for record, _ in outs)),
        env_id=source.env_id,
        env_steps=updates * settings.rollout_steps * source.num_envs * group.world_size,
        wall_seconds=max(0.0, clock() - start),
        episode_returns=tuple(r for part in episodes for r in part[0]),
        episode_lengths=tuple(n for part in episodes for n in part[1]),
    )
