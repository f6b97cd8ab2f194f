"""``capture_rollout``: run a policy in a source for a number of ticks and record every frame.

The loop, for tick t = 0 … T−1 (decision-time alignment, DESIGN.md §5.3)::

    actions, log_probs, values = policy(o_t)        # all live agents in one call
    rewards, dones, o_{t+1}   = source.step(actions)
    frame t = (o_t, actions, log_probs, values, rewards, dones)

then one more policy call on o_T gives the bootstrap values. Randomness: the source is reset
with ``seed``; the policy draws from ``numpy.random.default_rng([seed, 3])``; the town's
dynamics derive their own streams from ``(seed, tick)``. Same inputs, same arrays.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from townlet.envs.gymnasium_adapter import GymnasiumSource
from townlet.errors import RolloutError
from townlet.policy.replay import ReplayEventCounts
from townlet.policy.rollout.buffer import RolloutBuffer
from townlet.policy.rollout.frames import FrameRecorder, recorded_samples
from townlet.policy.rollout.pettingzoo_source import ParallelEnvStepper, is_parallel_env
from townlet.policy.rollout.policies import (
    RandomPolicy,
    ScriptedPolicy,
    check_policy_output,
    policy_kind,
)
from townlet.policy.rollout.sources import GymStepper, SourceInfo, Stepper, TownStepper
from townlet.world import WorldConfig

POLICY_STREAM = 3  # the policy's generator is default_rng([seed, POLICY_STREAM])

Progress = Callable[[int], object]
Recorded = Callable[[FrameRecorder], object]
"""Called after every recorded tick with the recorder (``recorder.recorded`` ticks final)."""


def make_stepper(env_or_config: object) -> Stepper:
    """The stepper for a ``WorldConfig`` (the town), a :class:`GymnasiumSource` or a PettingZoo
    ``ParallelEnv``. Raises :class:`RolloutError` for anything else."""
    if isinstance(env_or_config, WorldConfig):
        return TownStepper(env_or_config)
    if isinstance(env_or_config, GymnasiumSource):
        return GymStepper(env_or_config)
    if is_parallel_env(env_or_config):
        return ParallelEnvStepper(env_or_config)
    raise RolloutError(
        "env_or_config must be a WorldConfig, a GymnasiumSource (make_gymnasium_source) or a "
        f"PettingZoo ParallelEnv, got {type(env_or_config).__name__}"
    )


def resolve_policy(policy: object, info: SourceInfo) -> object:
    """Turn a policy argument into a policy object for a source.

    ``"scripted"`` → :class:`ScriptedPolicy`; ``"random"`` → :class:`RandomPolicy` over the
    source's actions; an object is used as is, after its ``check_source(info)`` if it has one.
    Deprecated: any other string or path is still loaded as a checkpoint (needs torch), with a
    ``DeprecationWarning`` — callers resolve paths first
    (:func:`townlet.policy.policy_argument.resolve_policy_argument`), so that capture does not
    reach up to the network code. Raises :class:`RolloutError` for a missing checkpoint file or
    a policy that does not fit.
    """
    if isinstance(policy, str) and policy in ("scripted", "random"):
        return (
            ScriptedPolicy() if policy == "scripted" else RandomPolicy(action_dim=info.action_dim)
        )
    if isinstance(policy, str | os.PathLike):
        path = Path(policy)
        if not path.is_file():
            raise RolloutError(
                f"policy must be 'scripted', 'random' or a checkpoint file; {str(path)!r} "
                "is none of these"
            )
        warnings.warn(
            "passing a checkpoint path as the capture policy is deprecated: load it first "
            "(townlet.policy.policy_argument.resolve_policy_argument)",
            DeprecationWarning,
            stacklevel=3,
        )
        from townlet.policy.rollout_torch import load_network_policy

        policy = load_network_policy(path)
    check = getattr(policy, "check_source", None)
    if callable(check):
        check(info)
    return policy


def _check_request(ticks: object, seed: object) -> None:
    if isinstance(ticks, bool) or not isinstance(ticks, int) or ticks <= 0:
        raise RolloutError(f"ticks must be positive to capture a rollout, got {ticks!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RolloutError(f"seed must be an int >= 0, got {seed!r}")


@attrs.frozen(kw_only=True, eq=False)
class CapturedFrames:
    """The raw result of the capture loop: the filled :class:`FrameRecorder`, the source's
    :class:`SourceInfo`, the event counters, and the capture settings. Turn it into a
    :class:`RolloutBuffer` with :func:`buffer_from_frames`."""

    recorder: FrameRecorder
    info: SourceInfo
    event_counts: ReplayEventCounts
    ticks: int
    seed: int
    policy: str


def capture_frames(
    env_or_config: WorldConfig | GymnasiumSource | Any,
    policy: object,
    ticks: int,
    seed: int = 0,
    *,
    progress: Progress | None = None,
    on_recorded: Recorded | None = None,
) -> CapturedFrames:
    """The capture loop of :func:`capture_rollout` (same arguments and errors), without the
    conversion to samples. ``on_recorded(recorder)`` runs after every tick, once its frame is
    final (e.g. to encode finished rows while the source steps)."""
    _check_request(ticks, seed)
    stepper = make_stepper(env_or_config)
    info = stepper.info
    policy = resolve_policy(policy, info)
    actor = stepper.actor(policy)
    rng = np.random.default_rng([seed, POLICY_STREAM])
    recorder = FrameRecorder(ticks, info)
    obs = stepper.reset(seed, out=recorder.slot(0))
    for tick in range(ticks):
        output = check_policy_output(actor(obs, rng), len(obs.features), info.action_dim)
        outcome = stepper.step(output[0], out=recorder.slot(tick + 1))
        recorder.write(tick, obs, output, outcome)
        obs = outcome.next_obs
        if on_recorded is not None:
            on_recorded(recorder)
        if progress is not None:
            progress(1)
    if len(obs.features):
        final = check_policy_output(actor(obs, rng), len(obs.features), info.action_dim)
        recorder.write_bootstrap(obs, final[2])
    return CapturedFrames(
        recorder=recorder,
        info=info,
        event_counts=stepper.event_counts(),
        ticks=ticks,
        seed=seed,
        policy=policy_kind(policy),
    )


def buffer_from_frames(frames: CapturedFrames) -> RolloutBuffer:
    """One :class:`ReplaySample` per agent (sidecar and metrics included) in a
    :class:`RolloutBuffer`."""
    info = frames.info
    capture = {
        "source": info.name,
        "policy": frames.policy,
        "seed": frames.seed,
        "social_stage": info.social_stage,
        "rollout_ticks": frames.ticks,
    }
    return RolloutBuffer(
        samples=recorded_samples(frames.recorder, capture),
        event_counts=frames.event_counts,
        rollout_ticks=frames.ticks,
        source=info.name,
        policy=frames.policy,
        seed=frames.seed,
        social_stage=info.social_stage,
    )


def capture_rollout(
    env_or_config: WorldConfig | GymnasiumSource | Any,
    policy: object,
    ticks: int,
    seed: int = 0,
    *,
    progress: Progress | None = None,
    on_recorded: Recorded | None = None,
) -> RolloutBuffer:
    """Capture ``ticks`` ticks of ``policy`` acting in ``env_or_config``.

    ``env_or_config``: a ``WorldConfig`` (the town; every agent acts each tick, in one batch),
    a :class:`~townlet.envs.gymnasium_adapter.GymnasiumSource` (each of its K copies is an
    agent) or a PettingZoo ``ParallelEnv``. ``policy``: ``"scripted"``, ``"random"``, a
    checkpoint path, or an object with ``act(maps, features, rng)`` (or ``act_world``; see
    :mod:`townlet.policy.rollout.policies`). ``progress`` is called with 1 after every tick;
    ``on_recorded`` as in :func:`capture_frames`.

    Returns a :class:`RolloutBuffer` with one sample per agent; an episode that ends (a faint,
    a Gymnasium termination or truncation) sets ``done`` on its last frame and the trajectory
    goes on in the same sample. Raises :class:`RolloutError` for ``ticks <= 0``, a negative
    seed, a source with no agents or a non-discrete action space, an unusable policy, or a
    policy output of the wrong shape or range.
    """
    frames = capture_frames(
        env_or_config, policy, ticks, seed, progress=progress, on_recorded=on_recorded
    )
    return buffer_from_frames(frames)
