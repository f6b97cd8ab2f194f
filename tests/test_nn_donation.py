"""The fused Adam step: equal to torch.optim.Adam, pure unless donated, and folds that donate
only the states they made (the caller's state stays as it was)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from _replay_helpers import make_sample  # noqa: E402
from townlet.config import BCConfig, PPOConfig  # noqa: E402
from townlet.policy.nn.adam import (  # noqa: E402
    AdamConfig,
    AdamState,
    _foreach_step,
    adam_init,
    make_adam,
)
from townlet.policy.nn.grads import (  # noqa: E402
    clip_by_global_norm,
    update_with_gradients,
)
from townlet.policy.nn.network import Params, apply, init_params  # noqa: E402
from townlet.policy.nn.rng import derive_generator  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.replay import InMemoryReplayDataset  # noqa: E402
from townlet.policy.training.strategies.bc_loop import bc_epoch  # noqa: E402
from townlet.policy.training.strategies.bc_step import bc_minibatch_step, init_bc_state  # noqa: E402
from townlet.policy.training.strategies.ppo_loop import (  # noqa: E402
    PERMUTATION_STREAM,
    ppo_epoch_updates,
    prepare_batches,
)
from townlet.policy.training.strategies.ppo_math import (  # noqa: E402
    minibatch_indices,
    select_minibatch,
)
from townlet.policy.training.strategies.ppo_step import (  # noqa: E402
    init_ppo_state,
    ppo_minibatch_step,
)

SPEC = NetworkSpec(map_shape=(2, 3, 3), feature_dim=4, action_dim=3, hidden_dim=16)


def _loss(params: Params, maps: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, None]:
    logits, values = apply(params, maps, feats, spec=SPEC)
    return (logits.logsumexp(-1) + (values - 1.0) ** 2).mean(), None


def _snapshot(params: Params, state: AdamState) -> list[torch.Tensor]:
    return [
        t.clone() for t in (*params.values(), *state.exp_avg.values(), *state.exp_avg_sq.values())
    ]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_donated_fused_adam_equals_torch_adam_over_100_steps(weight_decay: float) -> None:
    # The same gradient sequence into both optimizers: this compares the optimizers, not a
    # loss surface that amplifies rounding (test_nn_adam couples them through a loss).
    start = init_params(SPEC, 3)
    leaves = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    opt = torch.optim.Adam(leaves.values(), lr=1e-2, weight_decay=weight_decay)
    init, update = make_adam(AdamConfig(lr=1e-2, weight_decay=weight_decay))
    params: Params = {k: v.clone() for k, v in start.items()}
    state = init(params)
    gen = torch.Generator().manual_seed(5)
    for _ in range(100):
        grads = {k: torch.randn(v.shape, generator=gen) for k, v in start.items()}
        for k, leaf in leaves.items():
            leaf.grad = grads[k].clone()
        opt.step()
        params, state = update(grads, state, params, donate=True)
    for k in start:
        torch.testing.assert_close(params[k], leaves[k].detach(), atol=1e-6, rtol=0)
        torch.testing.assert_close(
            state.exp_avg_sq[k], opt.state[leaves[k]]["exp_avg_sq"], atol=1e-6, rtol=0
        )
        assert state.steps[k] == 100


def _one_step_inputs() -> tuple[Params, AdamState, dict[str, torch.Tensor]]:
    params = init_params(SPEC, 4)
    gen = torch.Generator().manual_seed(6)
    grads = {k: torch.randn(v.shape, generator=gen) for k, v in params.items()}
    _, update = make_adam(AdamConfig(lr=0.05))
    params, state = update(grads, adam_init(params), params)  # non-zero moments to start from
    return params, state, {k: g * 0.5 for k, g in grads.items()}


def test_undonated_update_leaves_params_state_and_grads_unchanged() -> None:
    params, state, grads = _one_step_inputs()
    before, grads_before = _snapshot(params, state), [g.clone() for g in grads.values()]
    new_params, new_state, _norm = update_with_gradients(
        make_adam(AdamConfig(lr=0.05)).update, params, grads, state, max_grad_norm=0.1
    )
    assert _same(_snapshot(params, state), before)
    assert _same(list(grads.values()), grads_before)
    assert dict(state.steps) == dict.fromkeys(params, 1)
    assert all(new_params[k] is not params[k] for k in params)
    assert not _same(_snapshot(new_params, new_state), before)


def test_donated_update_writes_in_place_and_equals_the_copying_one() -> None:
    params, state, grads = _one_step_inputs()
    update = make_adam(AdamConfig(lr=0.05)).update
    copied = update_with_gradients(update, params, grads, state, max_grad_norm=0.1)
    ptrs = {k: v.data_ptr() for k, v in params.items()}
    donated = update_with_gradients(update, params, grads, state, max_grad_norm=0.1, donate=True)
    assert {k: v.data_ptr() for k, v in donated[0].items()} == ptrs  # no copy was made
    assert _same(_snapshot(donated[0], donated[1]), _snapshot(copied[0], copied[1]))
    assert torch.equal(donated[2], copied[2])
    assert dict(donated[1].steps) == dict.fromkeys(params, 2)


def test_clip_in_place_equals_clip_by_copy() -> None:
    _params, _state, grads = _one_step_inputs()
    copied, norm = clip_by_global_norm(grads, 0.3)
    own = {k: g.clone() for k, g in grads.items()}
    clipped, own_norm = clip_by_global_norm(own, 0.3, donate=True)
    assert clipped is own and torch.equal(norm, own_norm) and float(norm) > 0.3
    assert all(torch.equal(copied[k], own[k]) for k in grads)


def test_elementwise_fallback_agrees_with_the_fused_kernel() -> None:
    params, state, grads = _one_step_inputs()
    cfg = AdamConfig(lr=0.05, weight_decay=0.02)
    fused_params, fused_state = make_adam(cfg).update(grads, state, params)
    keys = list(params)
    p, mu, nu = _foreach_step(
        [params[k] for k in keys],
        [grads[k] for k in keys],
        [state.exp_avg[k] for k in keys],
        [state.exp_avg_sq[k] for k in keys],
        [2] * len(keys),
        cfg,
    )
    for i, k in enumerate(keys):
        torch.testing.assert_close(p[i], fused_params[k], atol=1e-6, rtol=0)
        torch.testing.assert_close(mu[i], fused_state.exp_avg[k], atol=1e-6, rtol=0)
        torch.testing.assert_close(nu[i], fused_state.exp_avg_sq[k], atol=1e-6, rtol=0)


def test_ppo_fold_donates_only_its_own_states() -> None:
    dataset = InMemoryReplayDataset([make_sample(6, seed=i) for i in range(3)], batch_size=3)
    cfg = PPOConfig()
    prepared = prepare_batches(list(dataset.batches(0)), cfg, label="toy")
    state = init_ppo_state(SPEC, seed=0)
    before = _snapshot(state.params, state.adam_state)
    folded, stats = ppo_epoch_updates(state, prepared, cfg)
    assert _same(_snapshot(state.params, state.adam_state), before)
    # The same fold written out with copying updates gives the same bits.
    copying = state
    for index, data in enumerate(prepared.batches, start=1):
        gen = derive_generator(state.seed, PERMUTATION_STREAM, state.log_stream_offset, index)
        for indices in minibatch_indices(len(data), cfg, gen):
            copying, _ = ppo_minibatch_step(copying, select_minibatch(data, indices), cfg)
    assert len(stats) == 5 and copying.updates == folded.updates == 5
    assert _same(
        _snapshot(folded.params, folded.adam_state), _snapshot(copying.params, copying.adam_state)
    )


def test_bc_fold_donates_only_its_own_states() -> None:
    spec = NetworkSpec(map_shape=(1, 2, 2), feature_dim=3, action_dim=4, hidden_dim=8)
    gen = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randn(5, 1, 2, 2, generator=gen),
            torch.randn(5, 3, generator=gen),
            torch.randint(0, 4, (5,), generator=gen),
        )
        for _ in range(4)
    ]
    cfg = BCConfig(learning_rate=1e-2, weight_decay=0.01)
    state = init_bc_state(spec, seed=2)
    before = _snapshot(state.params, state.adam_state)
    folded, _stats = bc_epoch(state, batches, cfg)
    assert _same(_snapshot(state.params, state.adam_state), before)
    copying = state
    for batch in batches:
        copying, _ = bc_minibatch_step(copying, batch, cfg)
    assert _same(
        _snapshot(folded.params, folded.adam_state), _snapshot(copying.params, copying.adam_state)
    )
