"""Where a rollout comes from: the town, a Gymnasium adapter or a PettingZoo ParallelEnv, behind
one small stepping interface used by :func:`~townlet.policy.rollout.capture.capture_rollout`.

A stepper is the imperative shell around an environment: ``reset(seed)`` gives the first
:class:`Obs`, ``actor(policy)`` a function choosing actions for the live agents, ``step(actions)``
a :class:`Transition`; ``event_counts()`` the social counters so far. ``Obs.live`` lists the
agent indices that act this tick (``None``: all of them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import attrs
import numpy as np
from numpy.typing import NDArray

from townlet.envs.gymnasium_adapter import GymnasiumSource
from townlet.errors import RolloutError
from townlet.policy.replay import ReplayEventCounts
from townlet.policy.rollout.policies import Policy, PolicyOutput, WorldPolicy, policy_kind
from townlet.world import (
    ACTION_NAMES,
    FEATURE_NAMES,
    MAP_CHANNELS,
    WorldConfig,
    WorldState,
    is_truncated,
    observe,
    reset,
    step,
)
from townlet.world.events import Events


@attrs.frozen(kw_only=True)
class SourceInfo:
    """What a capture needs to know about its source.

    ``name``: ``"town"``, ``"gymnasium:<id>"`` or ``"pettingzoo:<name>"``; ``agent_ids`` (one
    sample each); ``action_dim``; ``feature_names``; ``map_shape`` ``(C, H, W)``, ``(0, 0, 0)``
    for a features-only source; ``map_channels``; ``action_names`` (None when actions have no
    names); ``social_stage`` (the town's reward stage, else None).
    """

    name: str
    agent_ids: tuple[str, ...]
    action_dim: int
    feature_names: tuple[str, ...]
    map_shape: tuple[int, int, int] = (0, 0, 0)
    map_channels: tuple[str, ...] = ()
    action_names: tuple[str, ...] | None = None
    social_stage: str | None = None

    @property
    def has_map(self) -> bool:
        """Whether observations carry a spatial map."""
        return self.map_shape[0] * self.map_shape[1] * self.map_shape[2] > 0

    def action_lookup(self) -> dict[str, int] | None:
        """``{payload JSON: id}`` with payloads ``{"kind": <action name>}`` (the reference's
        sidecar key, so per-kind action counts reach the metrics), or None."""
        if self.action_names is None:
            return None
        return {json.dumps({"kind": name}): i for i, name in enumerate(self.action_names)}


class Obs(NamedTuple):
    """Observations of the agents that act next: ``maps`` (L, C, H, W) or None, ``features``
    (L, D), ``live`` the L agent indices (None: all agents, in order)."""

    maps: NDArray[np.float32] | None
    features: NDArray[np.float32]
    live: NDArray[np.intp] | None


class Transition(NamedTuple):
    """One tick's outcome for the agents that acted: ``rewards``/``dones`` (L,), then the next
    observations."""

    rewards: NDArray[np.float32]
    dones: NDArray[np.bool_]
    next_obs: Obs


Actor = Callable[[Obs, np.random.Generator], PolicyOutput]

ObsSlot = tuple[NDArray[np.float32] | None, NDArray[np.float32]]
"""Where a stepper may write the next observations in place: ``(maps (N, C, H, W) or None,
features (N, D))`` views of the capture's recording buffers."""


class Stepper(Protocol):
    """The stepping interface of a rollout source (module docstring)."""

    info: SourceInfo

    def reset(self, seed: int, out: ObsSlot | None = None) -> Obs:
        """Reset the source with ``seed``; the observations of the agents that act first
        (written into ``out`` when the source can, and then returned as those arrays)."""
        ...

    def actor(self, policy: object) -> Actor:
        """``policy`` as an :data:`Actor`; raises :class:`RolloutError` if it cannot act here."""
        ...

    def step(self, actions: NDArray[np.int64], out: ObsSlot | None = None) -> Transition:
        """Apply one action per acting agent (L,); rewards, dones and the next observations
        (written into ``out`` when the source can)."""
        ...

    def event_counts(self) -> ReplayEventCounts:
        """The social event counters accumulated since the stepper was built."""
        ...


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of the ``episode``-th episode of a capture seeded ``seed`` (``seed``
    itself for episode 0, then independent 32-bit seeds)."""
    if episode == 0:
        return seed
    return int(np.random.SeedSequence([seed, episode]).generate_state(1, np.uint32)[0])


def observation_actor(policy: object) -> Actor:
    """An actor calling ``policy.act(maps, features, rng)``; raises :class:`RolloutError` when
    the policy has no such method."""
    if not isinstance(policy, Policy):
        raise RolloutError(f"policy {policy_kind(policy)!r} has no act(maps, features, rng) method")

    def act(obs: Obs, rng: np.random.Generator) -> PolicyOutput:
        return policy.act(obs.maps, obs.features, rng)

    return act


# Order of the accumulated town counters; see ``_town_event_vector``.
_TOWN_COUNTER_FIELDS = (
    "queue_conflict_events",
    "queue_conflict_intensity_sum",
    "shared_meal_events",
    "late_help_events",
    "shift_takeover_events",
    "chat_success_events",
    "chat_failure_events",
    "chat_quality_sum",
)


def _town_event_vector(events: Events) -> NDArray[np.float64]:
    """The §9.3 counters of one tick straight from the ``Events`` arrays — the same numbers as
    ``record_events`` over ``events_to_dicts(events)``, without building a dict per event."""
    ok = events.chat_ok
    successes = int(np.count_nonzero(ok))
    return np.array(
        [
            events.conflict_actor.size,
            float(events.conflict_intensity.sum(dtype=np.float64)),
            events.meal_agent.size,
            events.late_agent.size,
            events.shift_agent.size,
            successes,
            ok.size - successes,
            float(events.chat_quality[ok].sum(dtype=np.float64)),
        ],
        dtype=np.float64,
    )


def counts_from_vector(vector: NDArray[np.float64]) -> ReplayEventCounts:
    """A :class:`ReplayEventCounts` from an accumulated counter vector (town order)."""
    values = dict(zip(_TOWN_COUNTER_FIELDS, vector.tolist(), strict=True))
    return ReplayEventCounts(
        **{k: (v if k.endswith("_sum") else round(v)) for k, v in values.items()}
    )


class TownStepper:
    """The embedded town, all agents stepped in one batch. At ``episode_length`` ticks every
    agent is marked done (truncation) and the town is reset with the next episode seed."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.info = SourceInfo(
            name="town",
            agent_ids=tuple(f"agent_{i}" for i in range(config.num_agents)),
            action_dim=len(ACTION_NAMES),
            feature_names=FEATURE_NAMES,
            map_shape=(len(MAP_CHANNELS), 11, 11),
            map_channels=MAP_CHANNELS,
            action_names=ACTION_NAMES,
            social_stage=config.social_reward_stage,
        )
        self._counts = np.zeros(len(_TOWN_COUNTER_FIELDS), dtype=np.float64)
        self._seed = 0
        self._episode = 0
        self._state: WorldState | None = None

    @property
    def state(self) -> WorldState:
        """The current world state (after :meth:`reset`)."""
        if self._state is None:
            raise RuntimeError("reset the town before reading its state")
        return self._state

    def _obs(self, out: ObsSlot | None) -> Obs:
        if out is None:
            maps, features = observe(self.state)
        else:
            maps, features = observe(self.state, out=(out[0], out[1]))
        return Obs(maps, features, None)

    def reset(self, seed: int, out: ObsSlot | None = None) -> Obs:
        """Reset the town with ``seed`` (episode 0) and return every agent's observations,
        written into ``out`` when given."""
        self._seed, self._episode = seed, 0
        self._state = reset(self.config, seed)
        return self._obs(out)

    def actor(self, policy: object) -> Actor:
        """A :class:`WorldPolicy` acts on the world state, any other policy on observations
        (raises :class:`RolloutError` if it has no ``act`` method)."""
        if isinstance(policy, WorldPolicy):

            def act(obs: Obs, rng: np.random.Generator) -> PolicyOutput:
                return policy.act_world(self.state, rng)

            return act
        return observation_actor(policy)

    def step(self, actions: NDArray[np.int64], out: ObsSlot | None = None) -> Transition:
        """One town tick for all N agents; at truncation all are done and the town is reset.
        The next observations are written into ``out`` when given."""
        state, rewards, dones, events = step(self.state, actions)
        self._counts += _town_event_vector(events)
        if is_truncated(state):
            dones = np.ones_like(dones)
            self._episode += 1
            state = reset(self.config, episode_seed(self._seed, self._episode))
        self._state = state
        return Transition(rewards, dones, self._obs(out))

    def event_counts(self) -> ReplayEventCounts:
        """The town's social event counters summed over every tick stepped so far."""
        return counts_from_vector(self._counts)


class GymStepper:
    """A :class:`GymnasiumSource`: each of the K copies is an agent ``env_<k>``."""

    def __init__(self, source: GymnasiumSource) -> None:
        self.source = source
        self.info = SourceInfo(
            name=f"gymnasium:{source.env_id}",
            agent_ids=source.agent_ids,
            action_dim=source.action_dim,
            feature_names=source.feature_names,
        )

    def reset(self, seed: int, out: ObsSlot | None = None) -> Obs:
        """Reset the K copies from ``seed``; observations (K, D), no maps (``out`` unused:
        the recorder copies them)."""
        return Obs(None, self.source.reset(seed), None)

    def actor(self, policy: object) -> Actor:
        """``policy.act`` on the observations; raises :class:`RolloutError` without one."""
        return observation_actor(policy)

    def step(self, actions: NDArray[np.int64], out: ObsSlot | None = None) -> Transition:
        """Step the K copies with one action each; done = terminated or truncated (``out``
        unused)."""
        result = self.source.step(actions)
        next_obs = Obs(None, result.observations, None)
        return Transition(result.rewards, result.terminated | result.truncated, next_obs)

    def event_counts(self) -> ReplayEventCounts:
        """Always zero counters: a Gymnasium environment has no social events."""
        return ReplayEventCounts()


def stack_agent_obs(
    observations: Mapping[str, Any], names: list[str], env_name: str
) -> tuple[NDArray[np.float32] | None, NDArray[np.float32]]:
    """Stack per-agent observations: ``{"map", "features"}`` dicts or flat vectors.
    Raises :class:`RolloutError` for any other shape."""
    first = observations[names[0]]
    if isinstance(first, Mapping):
        if "features" not in first:
            raise RolloutError(f"{env_name}: dict observations need a 'features' entry")
        features = np.stack([observations[n]["features"] for n in names]).astype(np.float32)
        maps = None
        if "map" in first:
            maps = np.stack([observations[n]["map"] for n in names]).astype(np.float32)
        return maps, features
    features = np.stack([np.asarray(observations[n]) for n in names]).astype(np.float32)
    if features.ndim != 2:
        raise RolloutError(
            f"{env_name}: observations must be flat vectors or {{'map', 'features'}} dicts, "
            f"got shape {features.shape[1:]}"
        )
    return None, features
