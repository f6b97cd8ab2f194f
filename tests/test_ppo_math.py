"""PPO math helpers, hand-computed (spec/reference-ppo.md §6)."""

from __future__ import annotations

import math

import attrs
import pytest

torch = pytest.importorskip("torch")

from torch.distributions import Categorical  # noqa: E402

from townlet.config import PPOConfig  # noqa: E402
from townlet.policy.nn.network import apply, init_params  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.replay.batch import ReplayBatch  # noqa: E402
from townlet.policy.training.strategies.ppo.functional import (  # noqa: E402
    PPOMinibatch,
    compute_gae,
    minibatch_indices,
    minibatch_size,
    normalize_advantages,
    ppo_loss,
    prepare_batch,
    select_minibatch,
    value_loss,
)

LN2 = math.log(2.0)


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(list(rows), dtype=torch.float32)


# --- GAE -----------------------------------------------------------------------------------


def test_gae_spec_worked_example() -> None:
    adv, ret = compute_gae(t([1.0]), t([0.5, 0.4]), t([0.0]), 0.99, 0.95)
    assert adv.item() == pytest.approx(0.896, abs=1e-6)
    assert ret.item() == pytest.approx(1.396, abs=1e-6)


def test_gae_done_cuts_bootstrap_and_recursion() -> None:
    # t=1: done → δ = 2 − 0.4 = 1.6; t=0: δ = 1 + .9·.4 − .5 = .86, A = .86 + .45·1.6 = 1.58.
    adv, ret = compute_gae(t([1.0, 2.0]), t([0.5, 0.4, 0.3]), t([0.0, 1.0]), 0.9, 0.5)
    torch.testing.assert_close(adv, t([1.58, 1.6]))
    torch.testing.assert_close(ret, t([2.08, 2.0]))


def test_gae_without_bootstrap_column_uses_v_t_itself() -> None:
    # t=1: δ = 2 + .9·.4 − .4 = 1.96; t=0: δ = 1 + .9·.5 − .5 = .95, A = .95 + .45·1.96 = 1.832.
    adv, ret = compute_gae(t([1.0, 2.0]), t([0.5, 0.4]), t([0.0, 0.0]), 0.9, 0.5)
    torch.testing.assert_close(adv, t([1.832, 1.96]))
    torch.testing.assert_close(ret, t([2.332, 2.36]))


def _gae_loop(r, v, d, gamma, lam):  # type: ignore[no-untyped-def]
    steps = len(r)
    adv, gae = [0.0] * steps, 0.0
    for i in reversed(range(steps)):
        mask = 1.0 - d[i]
        next_v = v[i + 1] if len(v) == steps + 1 else v[i]
        delta = r[i] + gamma * next_v * mask - v[i]
        gae = delta + gamma * lam * mask * gae
        adv[i] = gae
    return adv


@pytest.mark.parametrize("bootstrap", [True, False])
@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (1.0, 1.0), (0.5, 0.0), (0.0, 0.7)])
def test_gae_equals_plain_loop_per_row(bootstrap: bool, gamma: float, lam: float) -> None:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 7, generator=gen)
    values = torch.randn(3, 8 if bootstrap else 7, generator=gen)
    dones = (torch.rand(3, 7, generator=gen) < 0.3).to(torch.bool)
    adv, ret = compute_gae(rewards, values, dones, gamma, lam)
    for b in range(3):
        expected = _gae_loop(
            rewards[b].tolist(), values[b].tolist(), dones[b].float().tolist(), gamma, lam
        )
        torch.testing.assert_close(adv[b], torch.tensor(expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(ret, adv + values[:, :7])


def test_gae_shape_errors() -> None:
    with pytest.raises(
        ValueError, match=r"Rewards and dones must be 2D tensors \(batch, timesteps\)"
    ):
        compute_gae(torch.zeros(3), torch.zeros(1, 4), torch.zeros(1, 3), 0.9, 0.9)
    with pytest.raises(ValueError, match="must be a 2D tensor"):
        compute_gae(torch.zeros(1, 3), torch.zeros(4), torch.zeros(1, 3), 0.9, 0.9)
    with pytest.raises(ValueError, match="must have 3 or 4 columns, got 5"):
        compute_gae(torch.zeros(1, 3), torch.zeros(1, 5), torch.zeros(1, 3), 0.9, 0.9)


# --- advantage normalisation -----------------------------------------------------------------


def test_normalize_by_hand() -> None:
    out = normalize_advantages(t([1.0, 2.0], [3.0, 2.0]))
    std = math.sqrt(0.5)  # population std of [1, 2, 3, 2]
    torch.testing.assert_close(out, t([-1.0, 0.0], [1.0, 0.0]) / (std + 1e-8))
    assert out.std(unbiased=False).item() == pytest.approx(1 - 1e-8 / std, abs=1e-6)


def test_normalize_single_element_is_zero_and_nan_passes_through() -> None:
    assert normalize_advantages(t([5.0])).tolist() == [[0.0]]
    nan = t([1.0, float("nan")])
    out = normalize_advantages(nan)
    assert out[0, 0].item() == 1.0 and math.isnan(out[0, 1].item())


# --- minibatching ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "size", "updates", "last"),
    [(1, 1, 1, 1), (2, 1, 2, 1), (3, 1, 3, 1), (10, 2, 5, 2), (100, 25, 4, 25), (1000, 32, 32, 8)],
)
def test_minibatch_sizing_table(n: int, size: int, updates: int, last: int) -> None:
    cfg = PPOConfig()
    assert minibatch_size(n, cfg) == size
    chunks = minibatch_indices(n, cfg, torch.Generator().manual_seed(0))
    assert len(chunks) == updates and len(chunks[-1]) == last
    assert sorted(torch.cat(chunks).tolist()) == list(range(n))


def test_minibatch_indices_follow_the_generator_only() -> None:
    cfg = PPOConfig(mini_batch_size=4, num_mini_batches=2)
    a = minibatch_indices(10, cfg, torch.Generator().manual_seed(3))
    b = minibatch_indices(10, cfg, torch.Generator().manual_seed(3))
    c = minibatch_indices(10, cfg, torch.Generator().manual_seed(4))
    assert [x.tolist() for x in a] == [x.tolist() for x in b] != [x.tolist() for x in c]
    assert [len(x) for x in a] == [4, 4, 2]
    with pytest.raises(ValueError, match="n=0"):
        minibatch_size(0, cfg)


# --- loss ------------------------------------------------------------------------------------

SPEC = NetworkSpec(map_shape=(1, 2, 2), feature_dim=3, action_dim=2, hidden_dim=4)


def _zero_params():  # type: ignore[no-untyped-def]
    return {k: torch.zeros_like(v) for k, v in init_params(SPEC, 0).items()}


def _hand_minibatch() -> PPOMinibatch:
    # Zero params → uniform logits, log π = −ln 2 for both actions, V = 0.
    return PPOMinibatch(
        maps=torch.ones(2, 1, 2, 2),
        features=torch.ones(2, 3),
        actions=torch.tensor([0, 1]),
        old_log_probs=torch.tensor([-LN2, -2 * LN2]),  # ratios 1 and 2
        advantages=torch.tensor([1.0, -1.0]),
        returns=torch.tensor([1.0, -0.5]),
        old_values=torch.tensor([0.1, 0.5]),
    )


def test_ppo_loss_by_hand() -> None:
    cfg = PPOConfig(clip_param=0.2, value_clip=0.2, value_loss_coef=0.5, entropy_coef=0.01)
    total, terms = ppo_loss(_zero_params(), _hand_minibatch(), cfg, spec=SPEC)
    # surrogate: min(1·1, 1·1) = 1 and min(2·−1, 1.2·−1) = −2 → policy = −(1 − 2)/2 = 0.5.
    assert terms.policy.item() == pytest.approx(0.5)
    # value: unclipped (0−1)², (0+.5)² = 1, .25; clipped V = 0.0, 0.3 → 1, .64; 0.5·mean(1, .64).
    assert terms.value.item() == pytest.approx(0.41)
    assert terms.entropy.item() == pytest.approx(LN2)
    assert terms.bc.item() == pytest.approx(LN2)
    assert terms.clip_fraction.item() == pytest.approx(0.5)
    assert terms.approx_kl.item() == pytest.approx(-LN2 / 2)
    assert total.item() == pytest.approx(0.5 + 0.5 * 0.41 - 0.01 * LN2)
    assert total.requires_grad is False  # zero params are plain tensors here


def test_ppo_loss_bc_term_and_value_only() -> None:
    cfg = PPOConfig(value_clip=0.0, bc_coef=0.3)
    total, terms = ppo_loss(_zero_params(), _hand_minibatch(), cfg, spec=SPEC)
    assert terms.value.item() == pytest.approx(0.5 * (1.0 + 0.25) / 2)  # plain 0.5·MSE
    assert total.item() == pytest.approx(0.5 + 0.5 * 0.3125 - 0.01 * LN2 + 0.3 * LN2)
    only, _ = ppo_loss(_zero_params(), _hand_minibatch(), cfg, spec=SPEC, value_only=True)
    assert only.item() == pytest.approx(0.5 * 0.3125)


def test_clip_fraction_is_strict() -> None:
    mb = _hand_minibatch()
    logp = torch.log_softmax(torch.zeros(2, 2), -1)[:, 0]
    exact = attrs.evolve(mb, old_log_probs=logp.clone())
    _, terms = ppo_loss(_zero_params(), exact, PPOConfig(clip_param=0.0), spec=SPEC)
    assert terms.clip_fraction.item() == 0.0  # ratio == 1 == 1 ± 0 is not clipped
    nudged = attrs.evolve(mb, old_log_probs=logp - torch.tensor([0.0, 1e-3]))
    _, terms = ppo_loss(_zero_params(), nudged, PPOConfig(clip_param=0.0), spec=SPEC)
    assert terms.clip_fraction.item() == 0.5


def test_ppo_loss_equals_categorical_reimplementation() -> None:
    params = init_params(SPEC, 2)
    gen = torch.Generator().manual_seed(5)
    mb = PPOMinibatch(
        maps=torch.randn(9, 1, 2, 2, generator=gen),
        features=torch.randn(9, 3, generator=gen),
        actions=torch.randint(0, 2, (9,), generator=gen),
        old_log_probs=-torch.rand(9, generator=gen) - 0.3,
        advantages=torch.randn(9, generator=gen),
        returns=torch.randn(9, generator=gen),
        old_values=torch.randn(9, generator=gen),
    )
    cfg = PPOConfig(clip_param=0.1, value_clip=0.3, bc_coef=0.2)
    total, terms = ppo_loss(params, mb, cfg, spec=SPEC)
    logits, v_new = apply(params, mb.maps, mb.features, spec=SPEC)
    dist = Categorical(logits=logits)
    logp = dist.log_prob(mb.actions)
    ratio = torch.exp(logp - mb.old_log_probs)
    surr = torch.min(ratio * mb.advantages, ratio.clamp(0.9, 1.1) * mb.advantages)
    v_clip = mb.old_values + (v_new - mb.old_values).clamp(-0.3, 0.3)
    v_loss = 0.5 * torch.max((v_new - mb.returns) ** 2, (v_clip - mb.returns) ** 2).mean()
    ent = dist.entropy().mean()
    ce = torch.nn.functional.cross_entropy(logits, mb.actions)
    expected = -surr.mean() + 0.5 * v_loss - 0.01 * ent + 0.2 * ce
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(terms.entropy, ent)
    torch.testing.assert_close(terms.bc, ce)
    torch.testing.assert_close(terms.approx_kl, (mb.old_log_probs - logp).mean())
    clipped = ((ratio > 1.1) | (ratio < 0.9)).float().mean()
    torch.testing.assert_close(terms.clip_fraction, clipped)


def test_shape_checks() -> None:
    with pytest.raises(ValueError, match="value loss needs equal shapes"):
        value_loss(torch.zeros(3), torch.zeros(3), torch.zeros(2), 0.2)
    mb = _hand_minibatch()
    bad = attrs.evolve(mb, advantages=torch.zeros(3))
    with pytest.raises(ValueError, match="policy surrogate needs equal shapes"):
        ppo_loss(_zero_params(), bad, PPOConfig(), spec=SPEC)


def test_select_minibatch_takes_rows() -> None:
    mb = _hand_minibatch()
    one = select_minibatch(mb, torch.tensor([1]))
    assert len(one) == 1 and one.actions.tolist() == [1] and one.returns.tolist() == [-0.5]
    assert one.maps is not None and one.maps.shape == (1, 1, 2, 2)


def test_prepare_batch_flattens_row_major_with_gae_and_normalisation() -> None:
    import numpy as np

    batch = ReplayBatch(
        maps=np.arange(2 * 2 * 4, dtype=np.float32).reshape(2, 2, 1, 2, 2),
        features=np.ones((2, 2, 3), np.float32),
        actions=np.array([[0, 1], [1, 0]]),
        old_log_probs=np.full((2, 2), -0.5, np.float32),
        value_preds=np.array([[0.5, 0.4, 0.3], [0.0, 0.0, 0.0]], np.float32),
        rewards=np.array([[1.0, 2.0], [0.0, 1.0]], np.float32),
        dones=np.array([[False, True], [False, False]]),
    )
    raw = prepare_batch(batch, PPOConfig(gamma=0.9, gae_lambda=0.5, advantage_normalization=False))
    # Row 0 is the done example above; row 1: δ1 = 1, δ0 = 0 → A = [0.45, 1].
    torch.testing.assert_close(raw.advantages, torch.tensor([1.58, 1.6, 0.45, 1.0]))
    torch.testing.assert_close(raw.returns, torch.tensor([2.08, 2.0, 0.45, 1.0]))
    torch.testing.assert_close(raw.old_values, torch.tensor([0.5, 0.4, 0.0, 0.0]))
    assert raw.actions.tolist() == [0, 1, 1, 0] and raw.maps is not None
    assert raw.maps.shape == (4, 1, 2, 2) and raw.maps[1, 0, 0, 0].item() == 4.0
    normed = prepare_batch(batch, PPOConfig(gamma=0.9, gae_lambda=0.5))
    torch.testing.assert_close(normed.advantages, normalize_advantages(raw.advantages))
    torch.testing.assert_close(normed.returns, raw.returns)


def test_bc_term_on_demonstration_rows_is_their_cross_entropy() -> None:
    params = init_params(SPEC, 3)
    gen = torch.Generator().manual_seed(8)
    mb = PPOMinibatch(
        maps=torch.randn(4, 1, 2, 2, generator=gen),
        features=torch.randn(4, 3, generator=gen),
        actions=torch.tensor([0, 1, 1, 0]),
        old_log_probs=-torch.rand(4, generator=gen) - 0.3,
        advantages=torch.randn(4, generator=gen),
        returns=torch.randn(4, generator=gen),
        old_values=torch.randn(4, generator=gen),
    )
    demo = (torch.randn(6, 1, 2, 2, generator=gen), torch.randn(6, 3, generator=gen),
            torch.tensor([1, 1, 0, 1, 0, 1]))  # fmt: skip
    cfg = PPOConfig(bc_coef=0.4)
    plain, plain_terms = ppo_loss(params, mb, cfg, spec=SPEC)
    total, terms = ppo_loss(params, mb, cfg, spec=SPEC, demo=demo)
    logits, _ = apply(params, demo[0], demo[1], spec=SPEC)
    expert_ce = torch.nn.functional.cross_entropy(logits, demo[2])
    torch.testing.assert_close(terms.bc, expert_ce)
    assert not torch.allclose(terms.bc, plain_terms.bc)  # not the minibatch's own actions
    torch.testing.assert_close(total, plain - 0.4 * plain_terms.bc + 0.4 * expert_ce)
    torch.testing.assert_close(terms.policy, plain_terms.policy)
    only, _ = ppo_loss(params, mb, cfg, spec=SPEC, value_only=True, demo=demo)
    torch.testing.assert_close(only, 0.5 * terms.value)  # warm-up: value loss alone
