"""The town as a PettingZoo ParallelEnv."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pettingzoo")
from pettingzoo.test import parallel_api_test

from townlet.envs.pettingzoo_town import make_town_env
from townlet.world import WorldConfig


def test_parallel_api_test_passes() -> None:
    parallel_api_test(make_town_env(WorldConfig(episode_length=200)), num_cycles=250)


def test_spaces_observations_and_truncation() -> None:
    env = make_town_env(WorldConfig(num_agents=3, episode_length=5), seed=7)
    obs, infos = env.reset(seed=1)
    assert env.agents == ["agent_0", "agent_1", "agent_2"] and set(infos) == set(env.agents)
    space = env.observation_space("agent_0")
    assert space["map"].shape == (4, 11, 11) and space["features"].shape == (33,)
    assert space.contains(obs["agent_1"])
    assert env.action_space("agent_0").n == 8
    for _t in range(5):
        obs, rew, _term, trunc, _ = env.step({a: 0 for a in env.agents})
        assert all(isinstance(v, float) for v in rew.values())
    assert all(trunc.values()) and env.agents == []
    first, _ = env.reset(seed=1)
    again, _ = make_town_env(WorldConfig(num_agents=3, episode_length=5)).reset(seed=1)
    np.testing.assert_array_equal(first["agent_2"]["features"], again["agent_2"]["features"])
