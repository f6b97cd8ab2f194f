"""bc_minibatch_step: equals an imperative CE + torch Adam loop, pure, value head untouched."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from townlet.config import BCConfig  # noqa: E402
from townlet.policy.nn.network import VALUE_HEAD_KEYS, apply  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.training.strategies.bc.step import (  # noqa: E402
    BCStats,
    bc_minibatch_step,
    init_bc_state,
)

SPEC = NetworkSpec(map_shape=(1, 2, 2), feature_dim=3, action_dim=4, hidden_dim=8)


def _batch(seed: int, n: int = 6):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 1, 2, 2, generator=gen),
        torch.randn(n, 3, generator=gen),
        torch.randint(0, 4, (n,), generator=gen),
    )


def test_matches_imperative_cross_entropy_adam_with_weight_decay() -> None:
    cfg = BCConfig(learning_rate=1e-2, weight_decay=0.01)
    state = init_bc_state(SPEC, seed=0)
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.params.items()}
    opt = torch.optim.Adam(leaves.values(), lr=1e-2, weight_decay=0.01)
    for i in range(5):
        maps, feats, actions = _batch(i)
        logits, _ = apply(leaves, maps, feats, spec=SPEC)
        loss = torch.nn.functional.cross_entropy(logits, actions)
        correct = int((logits.argmax(-1) == actions).sum())
        opt.zero_grad()
        loss.backward()
        opt.step()  # the value head has no grad, so torch skips it (no decay either)
        state, stats = bc_minibatch_step(state, (maps, feats, actions), cfg)
        assert stats.loss == pytest.approx(loss.item(), abs=1e-6)
        assert stats.correct == correct and stats.samples == 6
    for k, leaf in leaves.items():
        torch.testing.assert_close(state.params[k], leaf.detach(), atol=1e-6, rtol=0)
    for k in VALUE_HEAD_KEYS:
        assert state.adam_state.steps[k] == 0
    assert state.updates == 5


def test_bc_step_is_pure_and_no_map_spec_works() -> None:
    spec = NetworkSpec(feature_dim=3, action_dim=2, hidden_dim=8)
    state = init_bc_state(spec, seed=1)
    feats = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    actions = torch.tensor([0, 1, 1, 0])
    before = {k: v.clone() for k, v in state.params.items()}
    new_state, stats = bc_minibatch_step(state, (None, feats, actions), BCConfig())
    assert all(torch.equal(state.params[k], before[k]) for k in before)
    assert not torch.equal(new_state.params["shared.0.weight"], before["shared.0.weight"])
    assert torch.equal(actions, torch.tensor([0, 1, 1, 0]))
    assert stats.grad_norm > 0 and 0.0 <= stats.accuracy <= 1.0


def test_accuracy_property() -> None:
    assert BCStats(loss=1.0, correct=3, samples=4, grad_norm=0.1).accuracy == 0.75
    assert BCStats(loss=0.0, correct=0, samples=0, grad_norm=0.0).accuracy == 0.0
