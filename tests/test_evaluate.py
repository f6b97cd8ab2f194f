"""evaluate_policy: seeded, paired episodes in the town and in Gymnasium environments."""

from __future__ import annotations

import pytest

from townlet.errors import RolloutError
from townlet.policy.evaluate import PolicyEvaluation, evaluate_modes, evaluate_policy
from townlet.policy.rollout.sources import episode_seed
from townlet.world import WorldConfig

SHORT_TOWN = WorldConfig(episode_length=60)


def test_town_episodes_are_seeded_and_repeatable() -> None:
    first = evaluate_policy("scripted", SHORT_TOWN, episodes=3, seed=4)
    again = evaluate_policy("scripted", SHORT_TOWN, episodes=3, seed=4)
    assert first == again
    assert first.episodes == 3
    assert first.lengths == (60, 60, 60)
    assert first.seeds == tuple(episode_seed(4, i) for i in range(3))
    assert first.env == "town"


def test_town_scripted_beats_random_on_the_same_episodes() -> None:
    town = WorldConfig(episode_length=200)
    scripted = evaluate_policy("scripted", town, episodes=2, seed=0)
    random = evaluate_policy("random", town, episodes=2, seed=0)
    assert scripted.seeds == random.seeds
    assert scripted.mean > random.mean + 20.0


def test_mean_and_std_are_computed_from_the_returns() -> None:
    result = PolicyEvaluation(
        returns=[1.0, 3.0], lengths=[5, 7], seeds=[0, 1], env="town", deterministic=True
    )
    assert result.mean == 2.0
    assert result.std == 1.0
    assert result.to_dict()["returns"] == [1.0, 3.0]


def test_gymnasium_episodes_run_side_by_side_and_repeat() -> None:
    pytest.importorskip("gymnasium")
    first = evaluate_policy("random", "gymnasium:CartPole-v1", episodes=5, seed=2)
    assert first == evaluate_policy("random", "gymnasium:CartPole-v1", episodes=5, seed=2)
    assert first.env == "gymnasium:CartPole-v1"
    # CartPole pays 1 per step, so a return equals its episode's length.
    assert first.returns == tuple(float(n) for n in first.lengths)
    assert first.seeds == (2, 3, 4, 5, 6)
    assert first != evaluate_policy("random", "gymnasium:CartPole-v1", episodes=5, seed=3)


def test_greedy_network_policy_is_deterministic() -> None:
    pytest.importorskip("gymnasium")
    pytest.importorskip("torch")
    from townlet.policy.nn import NetworkSpec, init_params
    from townlet.policy.rollout_torch import make_network_policy

    spec = NetworkSpec(map_shape=(0, 0, 0), feature_dim=4, action_dim=2, hidden_dim=16)
    policy = make_network_policy(init_params(spec, 0), spec)
    env = "gymnasium:CartPole-v1"
    greedy = evaluate_policy(policy, env, episodes=4, seed=0, deterministic=True)
    assert greedy == evaluate_policy(policy, env, episodes=4, seed=0, deterministic=True)
    assert greedy.deterministic and greedy.mode == "argmax"
    assert greedy.to_dict()["mode"] == "argmax"
    sampled = evaluate_policy(policy, env, episodes=4, seed=0)  # sampling is the default
    assert not sampled.deterministic and sampled.mode == "sampled"
    assert sampled.to_dict()["mode"] == "sampled"
    assert sampled.seeds == greedy.seeds
    both = evaluate_modes(policy, env, episodes=4, seed=0)
    assert both == {"sampled": sampled, "argmax": greedy}


def test_mode_says_what_was_measured_for_policies_without_argmax() -> None:
    # The scripted expert always samples; asking for argmax must not be reported as argmax.
    result = evaluate_policy("scripted", SHORT_TOWN, episodes=1, seed=0, deterministic=True)
    assert result.mode == "sampled"
    assert result.to_dict()["mode"] == "sampled"


def test_max_steps_cuts_long_episodes() -> None:
    pytest.importorskip("gymnasium")
    result = evaluate_policy("random", "gymnasium:CartPole-v1", episodes=3, max_steps=5)
    assert max(result.lengths) <= 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"episodes": 0}, "episodes must be an int >= 1, got 0"),
        ({"seed": -1}, "seed must be an int >= 0, got -1"),
        ({"max_steps": 0}, "max_steps must be an int >= 1, got 0"),
        ({"env": "atari"}, "env must be 'town' or 'gymnasium:<id>', got 'atari'"),
        ({"env": 3}, "got int"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RolloutError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate_policy("random", **kwargs)  # type: ignore[arg-type]


def test_a_policy_that_does_not_fit_is_rejected() -> None:
    pytest.importorskip("gymnasium")
    with pytest.raises(RolloutError, match="scripted"):
        evaluate_policy("scripted", "gymnasium:CartPole-v1", episodes=1)
