"""The Gymnasium adapter: K copies stepped together, autoreset, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.envs.gymnasium_adapter import GymnasiumSource, make_gymnasium_source
from townlet.errors import RolloutError

gym = pytest.importorskip("gymnasium")


def test_cartpole_shapes_and_names() -> None:
    source = make_gymnasium_source("CartPole-v1", 3)
    obs = source.reset(0)
    assert isinstance(source, GymnasiumSource)
    assert (source.num_envs, source.observation_dim, source.action_dim) == (3, 4, 2)
    assert source.feature_names == ("obs_0", "obs_1", "obs_2", "obs_3")
    assert source.agent_ids == ("env_0", "env_1", "env_2")
    assert obs.shape == (3, 4) and obs.dtype == np.float32
    out = source.step(np.array([0, 1, 0]))
    assert out.observations.shape == (3, 4) and out.rewards.tolist() == [1.0, 1.0, 1.0]
    assert out.dones.dtype == np.bool_ and not out.dones.any()


def test_reset_seeds_each_copy_like_gymnasium() -> None:
    source = make_gymnasium_source("CartPole-v1", 2)
    obs = source.reset(5)
    for k in range(2):
        expected, _ = gym.make("CartPole-v1").reset(seed=5 + k)
        np.testing.assert_array_equal(obs[k], expected)


def test_autoreset_keeps_final_observation_and_counts_episodes() -> None:
    source = make_gymnasium_source("CartPole-v1", 2)
    source.reset(0)
    lengths: list[int] = []
    for _ in range(60):  # always pushing left ends an episode within ~10 steps
        out = source.step(np.zeros(2, dtype=np.int64))
        ended = np.flatnonzero(out.dones)
        keep = np.flatnonzero(~out.dones)
        np.testing.assert_array_equal(out.final_observations[keep], out.observations[keep])
        for k in ended:
            # the final observation is out of bounds, the new one a fresh start near 0
            assert (
                abs(out.final_observations[k, 2]) > 0.2 or abs(out.final_observations[k, 0]) > 2.4
            )
            assert np.abs(out.observations[k]).max() <= 0.05
        assert len(out.episode_returns) == len(ended) == len(out.episode_lengths)
        assert out.episode_returns == tuple(float(n) for n in out.episode_lengths)
        lengths.extend(out.episode_lengths)
    assert len(lengths) >= 8 and all(5 <= n <= 20 for n in lengths)


def test_truncation_is_reported() -> None:
    source = make_gymnasium_source("CartPole-v1", 1, max_episode_steps=3)
    source.reset(0)
    flags = [source.step(np.array([i % 2])).truncated[0] for i in range(6)]
    assert flags == [False, False, True, False, False, True]


def test_factory_and_repr() -> None:
    source = make_gymnasium_source(lambda: gym.make("CartPole-v1"), 2)
    assert source.env_id == "CartPole-v1"
    assert "num_envs=2" in repr(source)
    source.close()


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ("Pendulum-v1", "Discrete, got Box.*continuous actions are not supported"),
        ("FrozenLake-v1", "observation space must be a flat Box"),
        ("NoSuchEnv-v0", "unknown Gymnasium environment 'NoSuchEnv-v0'"),
        ("CartPole-v99", "unknown Gymnasium environment"),
    ],
)
def test_bad_environments(env: str, match: str) -> None:
    with pytest.raises(RolloutError, match=match):
        make_gymnasium_source(env, 2)


class _GridEnv(gym.Env):  # type: ignore[misc]
    """A 2-D observation: not flat."""

    observation_space = gym.spaces.Box(0.0, 1.0, shape=(2, 3))
    action_space = gym.spaces.Discrete(2)


def test_non_flat_observation_rejected() -> None:
    with pytest.raises(RolloutError, match=r"flat Box of shape \(D,\), got Box"):
        make_gymnasium_source(_GridEnv, 1)


def test_bad_arguments() -> None:
    with pytest.raises(RolloutError, match="num_envs must be an int >= 1"):
        make_gymnasium_source("CartPole-v1", 0)
    with pytest.raises(RolloutError, match="make_kwargs apply to an environment id"):
        make_gymnasium_source(lambda: gym.make("CartPole-v1"), 1, max_episode_steps=3)
    source = make_gymnasium_source("CartPole-v1", 2)
    with pytest.raises(RolloutError, match="call reset"):
        source.step(np.zeros(2, dtype=np.int64))
    source.reset(0)
    with pytest.raises(RolloutError, match=r"actions must be \(2,\) integers"):
        source.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(RolloutError, match=r"actions must lie in \[0, 2\), got \[0, 2\]"):
        source.step(np.array([0, 2]))
    with pytest.raises(RolloutError, match="seed must be an int >= 0"):
        source.reset(-1)
