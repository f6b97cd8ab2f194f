"""The written-out gradients (nn/analytic.py, ppo/analytic.py, bc_loss_and_grads) against
autograd of the same loss, in the same run: every parameter's gradient and every loss part."""

from __future__ import annotations

import functools

import pytest
import torch

from townlet.config import PPOConfig
from townlet.policy.nn.analytic import forward
from townlet.policy.nn.grads import value_and_grad
from townlet.policy.nn.network import apply, init_params, value_keys
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.training.strategies.bc.step import bc_loss, bc_loss_and_grads
from townlet.policy.training.strategies.ppo.analytic import ppo_loss_and_grads
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch, ppo_loss

TOWN = {"map_shape": (4, 11, 11), "feature_dim": 36, "action_dim": 8, "hidden_dim": 32}
MLP = {"feature_dim": 4, "action_dim": 2, "hidden_dim": 64, "activation": "tanh"}
SPECS = {
    "town_relu_shared": NetworkSpec(**TOWN),
    "town_tanh_separate": NetworkSpec(**{**TOWN, "activation": "tanh", "critic": "separate"}),
    "mlp_tanh_separate": NetworkSpec(**MLP, critic="separate", init="orthogonal"),
    "mlp_relu_shared": NetworkSpec(**{**MLP, "activation": "relu"}),
}
CONFIGS = {
    "default": PPOConfig(),
    "cartpole": PPOConfig(value_clip=0.0, entropy_coef=0.0, max_grad_norm=0.5),
    # Tight clips, so that many ratios and values sit outside them; bc and entropy terms on.
    "tight": PPOConfig(clip_param=0.02, value_clip=0.01, entropy_coef=0.05, bc_coef=0.3),
}


def _minibatch(spec: NetworkSpec, n: int, seed: int) -> PPOMinibatch:
    g = torch.Generator().manual_seed(seed)
    return PPOMinibatch(
        maps=torch.rand(n, *spec.map_shape, generator=g) if spec.has_map else None,
        features=torch.randn(n, spec.feature_dim, generator=g),
        actions=torch.randint(0, spec.action_dim, (n,), generator=g),
        old_log_probs=torch.randn(n, generator=g) * 0.3 - 1.0,
        advantages=torch.randn(n, generator=g),
        returns=torch.randn(n, generator=g),
        old_values=torch.randn(n, generator=g) * 0.1,
    )


def _assert_grads_close(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(expected)  # the same keys, in the parameters' order
    for key, grad in expected.items():
        assert got[key].shape == grad.shape, key
        torch.testing.assert_close(got[key], grad, rtol=0.0, atol=1e-6, msg=key)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
@pytest.mark.parametrize("n", [1, 5, 64])
def test_ppo_gradients_equal_autograd(spec_name: str, cfg_name: str, n: int) -> None:
    spec, cfg = SPECS[spec_name], CONFIGS[cfg_name]
    params = init_params(spec, 7)
    mb = _minibatch(spec, n, seed=n)
    loss_fn = functools.partial(ppo_loss, minibatch=mb, cfg=cfg, spec=spec)
    total, terms, grads = value_and_grad(loss_fn, params)
    got_total, parts, got_grads = ppo_loss_and_grads(params, mb, cfg, spec=spec)
    _assert_grads_close(dict(grads), got_grads)
    names = ("policy", "value", "entropy", "bc", "clip_fraction", "approx_kl")
    expected = torch.stack([total, *(getattr(terms, k) for k in names)])
    torch.testing.assert_close(torch.stack([got_total, *parts]), expected, rtol=0, atol=1e-6)


def test_ppo_gradients_on_ties_equal_autograd() -> None:
    # Ratios exactly at the clip bounds and clipped values equal to unclipped ones: autograd
    # splits min/max gradients evenly on ties and passes clamp's at its bounds.
    spec = SPECS["mlp_relu_shared"]
    cfg = PPOConfig(clip_param=0.2, value_clip=0.5)
    params = init_params(spec, 3)
    mb = _minibatch(spec, 16, seed=1)
    logits, values = apply(params, None, mb.features, spec=spec)
    new_logp = torch.log_softmax(logits, -1).gather(-1, mb.actions.unsqueeze(-1)).squeeze(-1)
    old = new_logp.detach().clone()
    old[:4] = new_logp[:4].detach() - torch.log(torch.tensor(1.2))  # ratio ≈ 1.2, the bound
    mb = PPOMinibatch(
        maps=None,
        features=mb.features,
        actions=mb.actions,
        old_log_probs=old,
        advantages=mb.advantages.clone().index_fill_(0, torch.tensor([5, 6]), 0.0),
        returns=mb.returns,
        old_values=values.detach().clone(),  # clipped == unclipped values
    )
    _total, _terms, grads = value_and_grad(
        functools.partial(ppo_loss, minibatch=mb, cfg=cfg, spec=spec), params
    )
    _assert_grads_close(dict(grads), ppo_loss_and_grads(params, mb, cfg, spec=spec)[2])


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_bc_gradients_equal_autograd(spec_name: str) -> None:
    spec = SPECS[spec_name]
    params = init_params(spec, 5)
    mb = _minibatch(spec, 33, seed=2)
    batch = (mb.maps, mb.features, mb.actions)
    wrt = [k for k in params if k not in value_keys(spec)]
    loss, correct, grads = value_and_grad(
        functools.partial(bc_loss, batch=batch, spec=spec), params, wrt=wrt
    )
    got_loss, got_correct, got_grads = bc_loss_and_grads(params, batch, spec=spec)
    _assert_grads_close(dict(grads), got_grads)
    assert float(got_loss) == pytest.approx(float(loss), abs=1e-6)
    assert int(got_correct) == int(correct)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_forward_equals_apply(spec_name: str) -> None:
    spec = SPECS[spec_name]
    params = init_params(spec, 9)
    mb = _minibatch(spec, 12, seed=3)
    logits, values = apply(params, mb.maps, mb.features, spec=spec)
    acts = forward(params, mb.maps, mb.features, spec=spec)
    assert torch.equal(acts.logits, logits)
    assert acts.values is not None and torch.equal(acts.values, values)
    assert forward(params, mb.maps, mb.features, spec=spec, values=False).values is None


def test_forward_without_maps_names_the_branch() -> None:
    spec = SPECS["town_relu_shared"]
    with pytest.raises(ValueError, match=r"map branch \(4, 11, 11\) but maps is None"):
        forward(init_params(spec, 0), None, torch.zeros(2, 36), spec=spec)


def test_ppo_mismatched_shapes_raise() -> None:
    spec = SPECS["mlp_relu_shared"]
    mb = _minibatch(spec, 8, seed=4)
    bad = PPOMinibatch(
        maps=None,
        features=mb.features,
        actions=mb.actions,
        old_log_probs=mb.old_log_probs[:7],
        advantages=mb.advantages,
        returns=mb.returns,
        old_values=mb.old_values,
    )
    with pytest.raises(ValueError, match="policy surrogate needs equal shapes"):
        ppo_loss_and_grads(init_params(spec, 0), bad, PPOConfig(), spec=spec)
