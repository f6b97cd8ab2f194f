"""The network policy: decision-time log-probs and values, seeded sampling, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from townlet.errors import RolloutError  # noqa: E402
from townlet.policy.nn import NetworkSpec, apply, init_params, save_checkpoint  # noqa: E402
from townlet.policy.rollout import capture_rollout  # noqa: E402
from townlet.policy.rollout_torch import (  # noqa: E402
    NetworkPolicy,
    load_network_policy,
    make_network_policy,
)
from townlet.world import WorldConfig  # noqa: E402

TOWN_SPEC = NetworkSpec(map_shape=(4, 11, 11), feature_dim=33, action_dim=8, hidden_dim=32)


def _policy(seed: int = 0) -> NetworkPolicy:
    return make_network_policy(init_params(TOWN_SPEC, seed), TOWN_SPEC)


def test_town_capture_records_decision_time_log_probs_and_values() -> None:
    policy = _policy()
    buffer = capture_rollout(WorldConfig(num_agents=3), policy, 25, seed=1)
    assert buffer.policy == "network"
    for sample in buffer.samples:
        maps = torch.from_numpy(np.array(sample.map))
        feats = torch.from_numpy(np.array(sample.features))
        with torch.no_grad():
            logits, values = apply(policy.params, maps, feats, spec=TOWN_SPEC)
        log_probs = torch.log_softmax(logits, -1)
        chosen = log_probs.gather(1, torch.from_numpy(np.array(sample.actions))[:, None]).squeeze(1)
        np.testing.assert_allclose(sample.old_log_probs, chosen.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sample.value_preds[:-1], values.numpy(), rtol=1e-5, atol=1e-6)
        assert sample.value_preds[-1] != 0.0  # bootstrap from the final observation
        assert (sample.old_log_probs < 0).all()


def test_sampling_is_seeded() -> None:
    cfg = WorldConfig(num_agents=4)
    a = capture_rollout(cfg, _policy(), 30, seed=3)
    b = capture_rollout(cfg, _policy(), 30, seed=3)
    c = capture_rollout(cfg, _policy(), 30, seed=4)
    for x, y in zip(a.samples, b.samples, strict=True):
        np.testing.assert_array_equal(x.actions, y.actions)
        np.testing.assert_array_equal(x.old_log_probs, y.old_log_probs)
    assert any(
        not np.array_equal(x.actions, z.actions) for x, z in zip(a.samples, c.samples, strict=True)
    )
    # an untrained network is close to uniform: several distinct actions are sampled
    assert len(set(a.samples[0].actions.tolist())) >= 4


def test_greedy_takes_the_argmax() -> None:
    policy = make_network_policy(init_params(TOWN_SPEC, 0), TOWN_SPEC, greedy=True)
    sample = capture_rollout(WorldConfig(num_agents=2), policy, 10).samples[0]
    with torch.no_grad():
        logits, _ = apply(
            policy.params,
            torch.from_numpy(np.array(sample.map)),
            torch.from_numpy(np.array(sample.features)),
            spec=TOWN_SPEC,
        )
    np.testing.assert_array_equal(sample.actions, logits.argmax(-1).numpy())


def test_checkpoint_path_policy(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "net.pt", spec=TOWN_SPEC, params=init_params(TOWN_SPEC, 5))
    loaded = load_network_policy(path)
    assert loaded.spec == TOWN_SPEC
    from_path = capture_rollout(WorldConfig(num_agents=2), str(path), 8, seed=2)
    direct = capture_rollout(WorldConfig(num_agents=2), loaded, 8, seed=2)
    np.testing.assert_array_equal(from_path.samples[1].actions, direct.samples[1].actions)


def test_features_only_network_on_cartpole() -> None:
    pytest.importorskip("gymnasium")
    from townlet.envs.gymnasium_adapter import make_gymnasium_source

    spec = NetworkSpec(feature_dim=4, action_dim=2, hidden_dim=16)
    policy = make_network_policy(init_params(spec, 0), spec)
    buffer = capture_rollout(make_gymnasium_source("CartPole-v1", 2), policy, 40, seed=0)
    assert buffer.samples[0].features.shape == (40, 4)
    assert np.all(buffer.samples[0].old_log_probs > np.log(0.2))


def test_mismatched_network_is_rejected() -> None:
    spec = NetworkSpec(feature_dim=5, action_dim=3, hidden_dim=8)
    policy = make_network_policy(init_params(spec, 0), spec)
    with pytest.raises(RolloutError, match=r"feature_dim 5 != 33 features; action_dim 3 != 8"):
        capture_rollout(WorldConfig(num_agents=1), policy, 3)
