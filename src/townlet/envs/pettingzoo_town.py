"""The embedded town as a PettingZoo ``ParallelEnv``.

Import this module only when you want the environment: it needs the optional ``pettingzoo`` and
``gymnasium`` packages (``pip install 'townlet[pettingzoo]'``), and raises ``ImportError`` with
that hint when they are missing. ``import townlet`` and ``townlet.world`` never import them.

Agents are ``agent_0`` … ``agent_{N-1}``. Each observation is a dict ``{"map": (4,11,11),
"features": (33,)}`` float32, actions are ``Discrete(8)`` (ids in ``townlet.world.ACTION_NAMES``).
An agent that faints is *terminated* and leaves ``agents`` (PettingZoo agents cannot come back;
inside the world its body respawns and idles). Everyone is *truncated* after
``config.episode_length`` ticks. ``infos[agent]`` is empty; the tick's events, in the reference's
dict shape, are in ``env.last_events``.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from townlet.world import (
    NUM_ACTIONS,
    WorldConfig,
    events_to_dicts,
    is_truncated,
    observe,
    reset,
    step,
)
from townlet.world.events import agent_names
from townlet.world.observe import FEATURE_NAMES, WINDOW
from townlet.world.state import WAIT, WorldState

try:
    from gymnasium import spaces
    from pettingzoo import ParallelEnv
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "townlet.envs.pettingzoo_town needs pettingzoo and gymnasium; "
        "install them with: pip install 'townlet[pettingzoo]'"
    ) from exc

Obs = dict[str, np.ndarray]


class TownParallelEnv(ParallelEnv):  # type: ignore[misc]
    """PettingZoo parallel environment over ``townlet.world`` (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {
        "name": "townlet_town_v0",
        "render_modes": [],
        "is_parallelizable": True,
    }

    def __init__(self, config: WorldConfig | None = None, *, seed: int = 0) -> None:
        self.config = config if config is not None else WorldConfig()
        self.possible_agents = list(agent_names(self.config.num_agents))
        self.agents: list[str] = []
        self.render_mode = None
        self.last_events: list[dict[str, Any]] = []
        self._index = {name: i for i, name in enumerate(self.possible_agents)}
        self._next_seed = seed
        self._state: WorldState | None = None
        self._alive = np.zeros(self.config.num_agents, dtype=bool)

    @functools.cache  # noqa: B019 - PettingZoo requires the same object
    def observation_space(self, agent: str) -> spaces.Dict:
        """``Dict(map=Box(0,1,(4,11,11)), features=Box(-inf,inf,(33,)))``, float32."""
        return spaces.Dict(
            {
                "map": spaces.Box(0.0, 1.0, shape=(4, WINDOW, WINDOW), dtype=np.float32),
                "features": spaces.Box(
                    -np.inf, np.inf, shape=(len(FEATURE_NAMES),), dtype=np.float32
                ),
            }
        )

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Discrete:
        """``Discrete(8)``: wait, move N/S/E/W, use, chat, yield."""
        return spaces.Discrete(NUM_ACTIONS)

    @property
    def state_record(self) -> WorldState:
        """The current ``WorldState`` (raises ``RuntimeError`` before ``reset``)."""
        if self._state is None:
            raise RuntimeError("call reset() before reading the state")
        return self._state

    def _observations(self) -> dict[str, Obs]:
        maps, features = observe(self.state_record)
        return {a: {"map": maps[self._index[a]], "features": features[self._index[a]]}
                for a in self.agents}  # fmt: skip

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Obs], dict[str, dict[str, Any]]]:
        """Start a new episode; without ``seed`` each reset uses the next seed in sequence."""
        if seed is not None:
            self._next_seed = int(seed)
        self._state = reset(self.config, self._next_seed)
        self._next_seed += 1
        self.agents = list(self.possible_agents)
        self._alive[:] = True
        self.last_events = []
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[
        dict[str, Obs], dict[str, float], dict[str, bool], dict[str, bool], dict[str, Any]
    ]:  # fmt: skip
        """Apply the live agents' actions (missing ones wait) and advance one tick."""
        acts = np.full(self.config.num_agents, WAIT, dtype=np.int64)
        for agent, action in actions.items():
            if agent in self._index and self._alive[self._index[agent]]:
                acts[self._index[agent]] = int(action)
        state, rewards, dones, events = step(self.state_record, acts)
        self._state = state
        self.last_events = events_to_dicts(events, self.possible_agents)
        truncated = is_truncated(state)
        live = list(self.agents)
        obs_all = self._observations()
        rew = {a: float(rewards[self._index[a]]) for a in live}
        term = {a: bool(dones[self._index[a]]) for a in live}
        trunc = {a: truncated for a in live}
        self.agents = [a for a in live if not (term[a] or trunc[a])]
        self._alive[:] = False
        self._alive[[self._index[a] for a in self.agents]] = True
        return obs_all, rew, term, trunc, {a: {} for a in live}


def make_town_env(config: WorldConfig | None = None, *, seed: int = 0) -> TownParallelEnv:
    """A PettingZoo ``ParallelEnv`` of the town (``WorldConfig()`` by default)."""
    return TownParallelEnv(config, seed=seed)
