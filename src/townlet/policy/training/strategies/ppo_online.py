"""Online PPO on a Gymnasium environment: collect ``num_envs × rollout_steps`` transitions with
the current parameters, run ``cfg.num_epochs`` passes of minibatch updates on them, repeat until
``total_steps`` environment steps; one telemetry record per update.

This module imports without torch (calling :func:`train_ppo_online` without it raises
:class:`~townlet.errors.TorchNotAvailableError`). The computing pieces live in
:mod:`~townlet.policy.training.strategies.ppo_collect` (collection, GAE with the truncation
bootstrap) and :mod:`~townlet.policy.training.strategies.ppo_online_step` (the update fold).

CPU defaults: the networks that fit these environments (64-64 MLPs) do too little work per
kernel for a thread pool, so a run pins torch to ``threads=1`` intra-op thread and puts the
previous setting back when it ends; ``threads=None`` leaves torch's setting alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from townlet._validators import check_int_arg
from townlet.config import PPOConfig
from townlet.dto.policy import PPOTrainingResult
from townlet.errors import ConfigError
from townlet.policy.nn.spec import Activation, CriticKind, InitScheme, NetworkSpec
from townlet.policy.training.strategies.ppo import require_torch
from townlet.policy.training.strategies.ppo_log import TelemetryLog, log_epoch, open_log

if TYPE_CHECKING:
    import torch

    from townlet.envs.gymnasium_adapter import GymnasiumSource
    from townlet.policy.nn.network import Params
    from townlet.policy.training.strategies.ppo_init import Init
    from townlet.policy.training.strategies.ppo_step import PPOState

EnvSpec = str | Callable[[], Any]
"""``"gymnasium:<id>"``, a bare Gymnasium id, or a zero-argument environment factory."""

UpdateCallback = Callable[[int, PPOTrainingResult], None]
"""``progress(update, record)``: called after each update (1-based) with its record."""


@attrs.frozen(kw_only=True, eq=False)
class OnlineTrainResult:
    """An online PPO run.

    ``state`` is the final :class:`~townlet.policy.training.strategies.ppo_step.PPOState`
    (``params``/``spec`` are shortcuts to it); ``history`` holds one telemetry record per update;
    ``env_steps`` the environment steps taken (updates × num_envs × rollout_steps, so at least
    ``total_steps``); ``wall_seconds`` the run's wall time; ``episode_returns`` /
    ``episode_lengths`` every episode that ended during training, in order.
    """

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
    from townlet.policy.training.strategies import ppo_init
    from townlet.policy.training.strategies.ppo_step import PPOState

    shape = ppo_init.DataShape(
        map_shape=(0, 0, 0),
        feature_dim=source.observation_dim,
        action_dim=source.action_dim,
        max_action=source.action_dim - 1,
    )
    net, params = ppo_init.initial_params(
        shape,
        label=source.env_id,
        seed=seed,
        init=init,
        # A checkpoint brings its own spec; bare parameters must fit the requested one.
        spec=spec if init is None or isinstance(init, Mapping) else None,
        device=device,
    )
    return PPOState(spec=net, params=params, adam_state=adam_init(params), seed=seed)


def train_ppo_online(
    env_spec: EnvSpec,
    total_steps: int,
    num_envs: int = 8,
    rollout_steps: int = 256,
    cfg: PPOConfig | None = None,
    seed: int = 0,
    *,
    hidden_dim: int = 64,
    activation: Activation = "tanh",
    weight_init: InitScheme = "orthogonal",
    critic: CriticKind = "separate",
    init: Init | None = None,
    device: str = "cpu",
    threads: int | None = 1,
    log_path: str | Path | None = None,
    log_frequency: int = 1,
    max_log_entries: int | None = None,
    progress: UpdateCallback | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> OnlineTrainResult:
    """Train PPO online on ``env_spec`` for at least ``total_steps`` environment steps.

    Each update collects ``rollout_steps`` steps of ``num_envs`` copies (one batched forward
    pass per step), computes GAE (truncated episodes bootstrapped from ``V(s_final)``), and runs
    ``cfg.num_epochs`` passes of minibatches of ``cfg.mini_batch_size`` rows (see
    ``minibatch_size``); ``ceil(total_steps / (num_envs · rollout_steps))`` updates in all.
    The network is ``hidden_dim`` wide with ``activation``, ``weight_init`` and ``critic`` (by
    default a separate value trunk, as Stable-Baselines3's MLP policy), unless ``init``
    (parameters, a ``Checkpoint`` or a checkpoint path, e.g. from BC) supplies one — a
    checkpoint's spec wins. Copy k resets with seed ``seed + k``; parameters, actions and
    minibatches derive from ``seed``: the same seed gives the same records
    (``epoch_duration_sec`` apart). ``threads`` torch threads are used during the run (see the
    module docstring). With ``log_path`` every ``log_frequency``-th update is appended as a
    telemetry 1.2 line, rotating after ``max_log_entries`` lines as ``train_ppo`` does.

    Raises: ``TorchNotAvailableError`` without torch; ``ConfigError`` for bad numbers or an
    env spec that is not ``gymnasium:<id>``; ``RolloutError`` for an unknown environment, a
    non-``Discrete`` action space or a non-flat observation space; ``CheckpointError`` for an
    ``init`` that does not fit; ``NonFiniteTrainingError`` when training diverges.
    """
    require_torch("train_ppo_online")
    from townlet.policy.nn.device import resolve_device

    cfg = PPOConfig() if cfg is None else cfg
    torch_device = resolve_device(device)
    for name, value, low in (
        ("total_steps", total_steps, 1),
        ("num_envs", num_envs, 1),
        ("rollout_steps", rollout_steps, 1),
        ("seed", seed, 0),
    ):
        check_int_arg(name, value, low)
    if threads is not None:
        check_int_arg("threads", threads, 1)
    updates = math.ceil(total_steps / (num_envs * rollout_steps))
    log = None
    if log_path is not None:
        log = open_log(log_path, log_frequency=log_frequency, max_entries=max_log_entries)
    with torch_threads(threads):
        source = make_online_source(env_spec, num_envs)
        try:
            spec = NetworkSpec(
                feature_dim=source.observation_dim,
                action_dim=source.action_dim,
                hidden_dim=hidden_dim,
                activation=activation,
                init=weight_init,
                critic=critic,
            )
            state = _initial_state(source, seed, spec, init, torch_device)
            return _run(source, state, cfg, updates, rollout_steps, log, progress, clock)
        finally:
            source.close()


def _run(
    source: GymnasiumSource,
    state: PPOState,
    cfg: PPOConfig,
    updates: int,
    rollout_steps: int,
    log: TelemetryLog | None,
    progress: UpdateCallback | None,
    clock: Callable[[], float],
) -> OnlineTrainResult:
    """The fold over updates, with the I/O around it (clock, telemetry file, progress)."""
    from townlet.policy.training.strategies.ppo_online_step import online_update

    start = clock()
    observations = source.reset(state.seed)
    history: list[PPOTrainingResult] = []
    returns: list[float] = []
    lengths: list[int] = []
    for update in range(1, updates + 1):
        state, observations, record, traj = online_update(
            state, source, observations, cfg, update=update, steps=rollout_steps, clock=clock
        )
        history.append(record)
        returns.extend(traj.episode_returns)
        lengths.extend(traj.episode_lengths)
        if log is not None:
            log = log_epoch(log, update, record)
        if progress is not None:
            progress(update, record)
    return OnlineTrainResult(
        state=state,
        history=tuple(history),
        env_id=source.env_id,
        env_steps=updates * rollout_steps * source.num_envs,
        wall_seconds=max(0.0, clock() - start),
        episode_returns=tuple(returns),
        episode_lengths=tuple(lengths),
    )
