"""ppo_minibatch_step: equals the imperative reference loop, is pure, seeded, resumable."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

torch = pytest.importorskip("torch")

from torch.distributions import Categorical  # noqa: E402

from townlet.config import PPOConfig  # noqa: E402
from townlet.policy.nn.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from townlet.policy.nn.network import VALUE_HEAD_KEYS, apply  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch  # noqa: E402
from townlet.policy.training.strategies.ppo.step import (  # noqa: E402
    PPOState,
    init_ppo_state,
    ppo_minibatch_step,
)

SPEC = NetworkSpec(map_shape=(2, 3, 3), feature_dim=4, action_dim=3, hidden_dim=16)


def _minibatch(seed: int, n: int = 8) -> PPOMinibatch:
    gen = torch.Generator().manual_seed(seed)
    return PPOMinibatch(
        maps=torch.randn(n, 2, 3, 3, generator=gen),
        features=torch.randn(n, 4, generator=gen),
        actions=torch.randint(0, 3, (n,), generator=gen),
        old_log_probs=-torch.rand(n, generator=gen) - 0.6,
        advantages=torch.randn(n, generator=gen),
        returns=torch.randn(n, generator=gen),
        old_values=torch.randn(n, generator=gen),
    )


def _reference_step(leaves, opt, mb, cfg):  # type: ignore[no-untyped-def]
    """The reference's update (spec §6.5), written imperatively."""
    logits, v_new = apply(leaves, mb.maps, mb.features, spec=SPEC)
    dist = Categorical(logits=logits)
    logp = dist.log_prob(mb.actions)
    ent = dist.entropy().mean()
    ratio = torch.exp(logp - mb.old_log_probs)
    eps = cfg.clip_param
    policy = -torch.min(ratio * mb.advantages, ratio.clamp(1 - eps, 1 + eps) * mb.advantages).mean()
    v_clip = mb.old_values + (v_new - mb.old_values).clamp(-cfg.value_clip, cfg.value_clip)
    value = 0.5 * torch.max((v_new - mb.returns) ** 2, (v_clip - mb.returns) ** 2).mean()
    total = policy + cfg.value_loss_coef * value - cfg.entropy_coef * ent
    opt.zero_grad()
    total.backward()
    norm = torch.nn.utils.clip_grad_norm_(list(leaves.values()), cfg.max_grad_norm)
    opt.step()
    kl = (mb.old_log_probs - logp).mean()
    return [x.item() for x in (total, policy, value, ent, kl, norm)]


def test_matches_imperative_reference_over_several_steps() -> None:
    cfg = PPOConfig(learning_rate=1e-2, max_grad_norm=0.5)
    state = init_ppo_state(SPEC, seed=3)
    leaves = {k: v.clone().requires_grad_(True) for k, v in state.params.items()}
    opt = torch.optim.Adam(leaves.values(), lr=cfg.learning_rate)
    clipped_once = False
    for i in range(6):
        mb = _minibatch(i)
        ref = _reference_step(leaves, opt, mb, cfg)
        state, stats = ppo_minibatch_step(state, mb, cfg)
        ours = [
            stats.loss_total,
            stats.loss_policy,
            stats.loss_value,
            stats.loss_entropy,
            stats.kl_divergence,
            stats.grad_norm,
        ]
        assert ours == pytest.approx(ref, abs=1e-5)
        clipped_once |= stats.grad_norm > cfg.max_grad_norm  # reported pre-clip
    assert clipped_once
    assert state.updates == 6
    for k, leaf in leaves.items():
        torch.testing.assert_close(state.params[k], leaf.detach(), atol=1e-6, rtol=0)


def test_stats_fields_by_hand() -> None:
    mb = attrs.evolve(_minibatch(0, n=4), advantages=torch.tensor([1.0, 2.0, 3.0, 6.0]))
    _, stats = ppo_minibatch_step(init_ppo_state(SPEC, seed=0), mb, PPOConfig())
    assert stats.transitions == 4
    assert stats.adv_mean == pytest.approx(3.0)
    assert stats.adv_std == pytest.approx(3.5**0.5, rel=1e-6)  # sqrt((4 + 1 + 0 + 9) / 4)
    assert stats.loss_bc > 0 and 0.0 <= stats.clip_fraction <= 1.0
    _, single = ppo_minibatch_step(init_ppo_state(SPEC, seed=0), _minibatch(1, n=1), PPOConfig())
    assert single.adv_std == 0.0 and single.transitions == 1


def test_step_leaves_inputs_unchanged() -> None:
    state = init_ppo_state(SPEC, seed=1)
    mb = _minibatch(2)
    params_before = {k: v.clone() for k, v in state.params.items()}
    moments_before = {k: v.clone() for k, v in state.adam_state.exp_avg.items()}
    mb_before = {a.name: getattr(mb, a.name).clone() for a in attrs.fields(PPOMinibatch)}
    new_state, _ = ppo_minibatch_step(state, mb, PPOConfig())
    assert new_state is not state and state.updates == 0
    for k in params_before:
        assert torch.equal(state.params[k], params_before[k])
        assert torch.equal(state.adam_state.exp_avg[k], moments_before[k])
        assert state.adam_state.steps[k] == 0
        assert not torch.equal(new_state.params[k], params_before[k])
    for name, tensor in mb_before.items():
        assert torch.equal(getattr(mb, name), tensor)


def test_value_only_updates_only_the_value_head() -> None:
    state = init_ppo_state(SPEC, seed=1)
    new_state, stats = ppo_minibatch_step(state, _minibatch(4), PPOConfig(), value_only=True)
    for k in state.params:
        changed = not torch.equal(new_state.params[k], state.params[k])
        assert changed == (k in VALUE_HEAD_KEYS), k
        assert new_state.adam_state.steps[k] == (1 if k in VALUE_HEAD_KEYS else 0)
    assert stats.loss_total == pytest.approx(0.5 * stats.loss_value)
    assert new_state.updates == 1


def test_same_inputs_same_outputs() -> None:
    mb, cfg = _minibatch(5), PPOConfig()
    a, sa = ppo_minibatch_step(init_ppo_state(SPEC, seed=9), mb, cfg)
    b, sb = ppo_minibatch_step(init_ppo_state(SPEC, seed=9), mb, cfg)
    assert sa == sb
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


def _run(state: PPOState, seeds: range) -> PPOState:
    for i in seeds:
        state, _ = ppo_minibatch_step(state, _minibatch(i), PPOConfig())
    return state


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    straight = _run(init_ppo_state(SPEC, seed=2), range(6))
    half = _run(init_ppo_state(SPEC, seed=2), range(3))
    save_checkpoint(
        tmp_path / "half.pt",
        spec=half.spec,
        params=half.params,
        adam_state=half.adam_state,
        counters={"seed": half.seed, "updates": half.updates},
    )
    ckpt = load_checkpoint(tmp_path / "half.pt", expected_spec=SPEC)
    assert ckpt.adam_state is not None
    resumed = PPOState(
        spec=ckpt.spec,
        params=ckpt.params,
        adam_state=ckpt.adam_state,
        seed=int(ckpt.counters["seed"]),
        updates=int(ckpt.counters["updates"]),
    )
    resumed = _run(resumed, range(3, 6))
    assert resumed.updates == straight.updates == 6
    for k in straight.params:
        assert torch.equal(resumed.params[k], straight.params[k]), k
