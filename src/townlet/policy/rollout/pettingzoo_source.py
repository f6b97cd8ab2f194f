"""A PettingZoo ``ParallelEnv`` as a rollout source.

Agents are ``env.possible_agents``; the ones in ``env.agents`` act each tick, batched into one
policy call. An agent that is terminated or truncated leaves until the environment is reset,
which happens as soon as no agent is left (with the next episode seed); its trajectory then
continues in the same sample, the ``done`` marking the cut. Observations are flat vectors or
``{"map", "features"}`` dicts (the town's env). Events come from ``env.last_events`` when the
environment has it (the town's env does).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from townlet.errors import RolloutError
from townlet.policy.replay import ReplayEventCounts, record_events
from townlet.policy.rollout.policies import PolicyOutput, WorldPolicy
from townlet.policy.rollout.sources import (
    Actor,
    Obs,
    ObsSlot,
    SourceInfo,
    Transition,
    episode_seed,
    observation_actor,
    stack_agent_obs,
)
from townlet.world import ACTION_NAMES, FEATURE_NAMES, MAP_CHANNELS, WorldConfig


def is_parallel_env(env: object) -> bool:
    """Whether ``env`` looks like a PettingZoo ``ParallelEnv`` (duck-typed, no import)."""
    return all(hasattr(env, name) for name in ("possible_agents", "action_space", "reset", "step"))


def _space_dims(env: Any, agents: list[str], name: str) -> tuple[int, int, tuple[int, int, int]]:
    """(action_dim, feature_dim, map_shape) shared by every agent, checked."""
    sizes = set()
    for agent in agents:
        space = env.action_space(agent)
        n = getattr(space, "n", None)
        if type(space).__name__ != "Discrete" or n is None:
            raise RolloutError(f"{name}: action space of {agent!r} must be Discrete, got {space!r}")
        sizes.add(int(n))
    if len(sizes) != 1:
        raise RolloutError(f"{name}: agents have different action space sizes {sorted(sizes)}")
    space = env.observation_space(agents[0])
    shapes = getattr(space, "spaces", None)
    if isinstance(shapes, dict):
        if "features" not in shapes:
            raise RolloutError(f"{name}: Dict observation space needs a 'features' Box")
        features = tuple(shapes["features"].shape)
        grid = tuple(shapes["map"].shape) if "map" in shapes else (0, 0, 0)
    else:
        features, grid = tuple(getattr(space, "shape", None) or ()), (0, 0, 0)
    if len(features) != 1 or len(grid) != 3:
        raise RolloutError(
            f"{name}: observations must be flat Box vectors or Dict(map=(C,H,W), "
            f"features=(D,)), got {space!r}"
        )
    return sizes.pop(), int(features[0]), (int(grid[0]), int(grid[1]), int(grid[2]))


class ParallelEnvStepper:
    """A PettingZoo ``ParallelEnv`` behind the stepper interface (module docstring)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        metadata = getattr(env, "metadata", None) or {}
        name = f"pettingzoo:{metadata.get('name', type(env).__name__)}"
        agents = [str(a) for a in (getattr(env, "possible_agents", None) or [])]
        if not agents:
            raise RolloutError(
                f"No agents available for rollout capture: {name} has no possible_agents"
            )
        action_dim, feature_dim, map_shape = _space_dims(env, agents, name)
        config = getattr(env, "config", None)
        town = isinstance(config, WorldConfig) and feature_dim == len(FEATURE_NAMES)
        self.info = SourceInfo(
            name=name,
            agent_ids=tuple(agents),
            action_dim=action_dim,
            feature_names=FEATURE_NAMES if town else tuple(f"obs_{i}" for i in range(feature_dim)),
            map_shape=map_shape,
            map_channels=MAP_CHANNELS if town else (),
            action_names=ACTION_NAMES if town and action_dim == len(ACTION_NAMES) else None,
            social_stage=config.social_reward_stage if isinstance(config, WorldConfig) else None,
        )
        self._index = {a: i for i, a in enumerate(agents)}
        self._names: list[str] = []
        self._seed = 0
        self._episode = 0
        self._events = ReplayEventCounts()

    def _obs(self, observations: dict[Any, Any]) -> Obs:
        names = [str(a) for a in self.env.agents]
        missing = [a for a in names if a not in observations]
        if missing:
            raise RolloutError(f"{self.info.name}: no observation for live agent(s) {missing}")
        self._names = names
        maps, features = stack_agent_obs(observations, names, self.info.name)
        live = np.array([self._index[a] for a in names], dtype=np.intp)
        return Obs(maps, features, live)

    def reset(self, seed: int, out: ObsSlot | None = None) -> Obs:
        """Reset the env with ``seed`` (episode 0); observations of the live agents (``out``
        unused: the recorder copies them)."""
        self._seed, self._episode = seed, 0
        observations, _ = self.env.reset(seed=seed)
        return self._obs(observations)

    def actor(self, policy: object) -> Actor:
        """A :class:`WorldPolicy` acts on the env's world state when it has one, any other policy
        on observations (raises :class:`RolloutError` if it has no ``act`` method)."""
        if isinstance(policy, WorldPolicy) and hasattr(type(self.env), "state_record"):

            def act(obs: Obs, rng: np.random.Generator) -> PolicyOutput:
                actions, log_probs, values = policy.act_world(self.env.state_record, rng)
                live = obs.live if obs.live is not None else slice(None)
                return actions[live], log_probs[live], values[live]

            return act
        return observation_actor(policy)

    def step(self, actions: NDArray[np.int64], out: ObsSlot | None = None) -> Transition:
        """Step the live agents; when none remain the env is reset with the next episode seed
        (``out`` unused)."""
        names = self._names
        observations, rewards, terms, truncs, _ = self.env.step(
            {a: int(x) for a, x in zip(names, actions.tolist(), strict=True)}
        )
        reward = np.array([rewards.get(a, 0.0) for a in names], dtype=np.float32)
        done = np.array(
            [bool(terms.get(a, False) or truncs.get(a, False)) for a in names], dtype=np.bool_
        )
        self._events = record_events(self._events, getattr(self.env, "last_events", None) or ())
        if not self.env.agents:
            self._episode += 1
            observations, _ = self.env.reset(seed=episode_seed(self._seed, self._episode))
        return Transition(reward, done, self._obs(observations))

    def event_counts(self) -> ReplayEventCounts:
        """Social event counters from the env's ``last_events`` (zero if it has none)."""
        return self._events
