"""Pure Adam against torch.optim.Adam, gradient helper, global-norm clipping."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from townlet.policy.nn.adam import AdamConfig, adam_init, adam_update  # noqa: E402
from townlet.policy.nn.grads import (  # noqa: E402
    apply_gradients,
    clip_by_global_norm,
    global_norm,
    value_and_grad,
)
from townlet.policy.nn.network import apply, init_params  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402

SPEC = NetworkSpec(map_shape=(2, 2, 2), feature_dim=3, action_dim=4, hidden_dim=12)


def _loss(params, maps, feats):  # type: ignore[no-untyped-def]
    logits, values = apply(params, maps, feats, spec=SPEC)
    return (logits.logsumexp(-1) + (values - 1.0) ** 2).mean(), None


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adam_equals_torch_adam_over_100_steps(weight_decay: float) -> None:
    start = init_params(SPEC, 0)
    leaves = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    opt = torch.optim.Adam(leaves.values(), lr=3e-3, betas=(0.8, 0.99), weight_decay=weight_decay)
    cfg = AdamConfig(lr=3e-3, betas=(0.8, 0.99), weight_decay=weight_decay)
    params, state = start, adam_init(start)
    gen = torch.Generator().manual_seed(2)
    for _ in range(100):
        maps, feats = torch.randn(5, 2, 2, 2, generator=gen), torch.randn(5, 3, generator=gen)
        opt.zero_grad()
        _loss(leaves, maps, feats)[0].backward()
        opt.step()
        _, _, grads = value_and_grad(lambda p: _loss(p, maps, feats), params)  # noqa: B023
        params, state = adam_update(grads, state, params, cfg)
    for k in start:
        torch.testing.assert_close(params[k], leaves[k].detach(), atol=1e-6, rtol=0)
        torch.testing.assert_close(
            state.exp_avg[k], opt.state[leaves[k]]["exp_avg"], atol=1e-6, rtol=0
        )
        assert state.steps[k] == 100


def test_adam_first_step_by_hand() -> None:
    # Step 1: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g², update = -lr · g / (|g| + eps).
    params = {"w": torch.tensor([1.0, -2.0])}
    grads = {"w": torch.tensor([0.5, -4.0])}
    new, state = adam_update(grads, adam_init(params), params, AdamConfig(lr=0.1, eps=0.0))
    torch.testing.assert_close(new["w"], torch.tensor([0.9, -1.9]))
    torch.testing.assert_close(state.exp_avg["w"], torch.tensor([0.05, -0.4]))
    torch.testing.assert_close(state.exp_avg_sq["w"], torch.tensor([0.00025, 0.016]))


def test_adam_update_is_pure_and_subset_updates_leave_others() -> None:
    params = init_params(SPEC, 1)
    state = adam_init(params)
    snapshot = {k: v.clone() for k, v in params.items()}
    grads = {"value_head.weight": torch.ones(1, 12), "value_head.bias": torch.ones(1)}
    new, new_state = adam_update(grads, state, params, AdamConfig())
    for k in params:
        assert torch.equal(params[k], snapshot[k])
        assert torch.count_nonzero(state.exp_avg[k]) == 0 and state.steps[k] == 0
    assert new["shared.0.weight"] is params["shared.0.weight"]
    assert new_state.steps["shared.0.weight"] == 0 and new_state.steps["value_head.bias"] == 1
    assert not torch.equal(new["value_head.bias"], params["value_head.bias"])


def test_adam_config_validation() -> None:
    with pytest.raises(ValueError, match="betas"):
        AdamConfig(betas=(0.9, 1.0))
    with pytest.raises(ValueError):
        AdamConfig(lr=0.0)


def test_value_and_grad_equals_backward_and_respects_wrt() -> None:
    params = init_params(SPEC, 4)
    gen = torch.Generator().manual_seed(0)
    maps, feats = torch.randn(3, 2, 2, 2, generator=gen), torch.randn(3, 3, generator=gen)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    _loss(leaves, maps, feats)[0].backward()
    loss, aux, grads = value_and_grad(lambda p: _loss(p, maps, feats), params)
    assert aux is None and not loss.requires_grad
    for k in params:
        torch.testing.assert_close(grads[k], leaves[k].grad)
        assert not params[k].requires_grad
    _, _, head = value_and_grad(lambda p: _loss(p, maps, feats), params, wrt=["value_head.bias"])
    assert list(head) == ["value_head.bias"]
    torch.testing.assert_close(head["value_head.bias"], leaves["value_head.bias"].grad)


def test_clip_by_global_norm_by_hand() -> None:
    grads = {"a": torch.tensor([3.0]), "b": torch.tensor([[4.0]])}
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm.item() == pytest.approx(5.0)
    scale = 1.0 / (5.0 + 1e-6)
    torch.testing.assert_close(clipped["a"], torch.tensor([3.0 * scale]))
    torch.testing.assert_close(clipped["b"], torch.tensor([[4.0 * scale]]))
    assert torch.equal(grads["a"], torch.tensor([3.0]))  # input untouched
    same, norm = clip_by_global_norm(grads, 10.0)
    assert torch.equal(same["a"], grads["a"]) and norm.item() == pytest.approx(5.0)
    off, norm = clip_by_global_norm(grads, 0.0)  # 0 disables clipping, still reports the norm
    assert off is grads and norm.item() == pytest.approx(5.0)


def test_clip_matches_clip_grad_norm() -> None:
    gen = torch.Generator().manual_seed(3)
    tensors = [torch.randn(4, 5, generator=gen), torch.randn(7, generator=gen)]
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    for leaf, t in zip(leaves, tensors, strict=True):
        leaf.grad = t.clone()
    ref_norm = torch.nn.utils.clip_grad_norm_(leaves, 0.5)
    clipped, norm = clip_by_global_norm({"x": tensors[0], "y": tensors[1]}, 0.5)
    assert norm.item() == pytest.approx(ref_norm.item())
    torch.testing.assert_close(clipped["x"], leaves[0].grad, atol=0, rtol=0)
    torch.testing.assert_close(clipped["y"], leaves[1].grad, atol=0, rtol=0)
    assert global_norm(clipped).item() == pytest.approx(0.5, abs=1e-5)


def test_apply_gradients_reports_pre_clip_norm() -> None:
    params = {"w": torch.zeros(2)}
    grads = {"w": torch.tensor([6.0, 8.0])}
    new, state, norm = apply_gradients(
        params, grads, adam_init(params), AdamConfig(lr=0.1), max_grad_norm=0.5
    )
    assert norm.item() == pytest.approx(10.0)
    # Adam's first step moves each coordinate by ~lr in the gradient's sign, whatever the scale.
    torch.testing.assert_close(new["w"], torch.tensor([-0.1, -0.1]), atol=1e-6, rtol=0)
    expected_m = 0.1 * torch.tensor([6.0, 8.0]) * 0.5 / (10.0 + 1e-6)
    torch.testing.assert_close(state.exp_avg["w"], expected_m)
    assert math.isclose(state.exp_avg_sq["w"][0].item(), 0.001 * (0.3 - 3e-8) ** 2, rel_tol=1e-4)
