"""The behaviour gate: Student-t quantiles without scipy and the paired-return decision."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from townlet.errors import PromotionError
from townlet.policy.training.services.behaviour_gate import (
    BehaviourGateResult,
    paired_return_gate,
    regularized_incomplete_beta,
    student_t_cdf,
    student_t_quantile,
)


# Published two-sided critical values (tables, or scipy.stats.t.ppf to 10 digits).
@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 9, 2.2621571628),
        (0.975, 1, 12.7062047362),
        (0.95, 1, 6.3137515147),
        (0.975, 2, 4.3026527297),
        (0.995, 2, 9.9248432009),
        (0.975, 30, 2.0422724563),
        (0.9, 5, 1.4758840488),
        (0.9995, 1, 636.6192487687),
        (0.975, 1_000_000, 1.9599663566),
    ],
)
def test_t_quantile_matches_tables(p: float, df: float, expected: float) -> None:
    assert student_t_quantile(p, df) == pytest.approx(expected, rel=1e-9)
    assert student_t_quantile(1 - p, df) == pytest.approx(-expected, rel=1e-9)


def test_t_quantile_median_and_domain() -> None:
    assert student_t_quantile(0.5, 7) == 0.0
    for bad_p in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="quantile level"):
            student_t_quantile(bad_p, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        student_t_quantile(0.9, 0)


def test_t_cdf_known_values() -> None:
    # df=1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi.
    for t in (-3.0, -0.5, 0.0, 0.7, 10.0):
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)
    # df=2 has a closed form: F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
    for t in (-2.0, 0.3, 4.0):
        assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-13)


def test_incomplete_beta_closed_forms() -> None:
    # I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1 - x)^b.
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert regularized_incomplete_beta(1, 1, x) == pytest.approx(x, abs=1e-14)
        assert regularized_incomplete_beta(3.5, 1, x) == pytest.approx(x**3.5, abs=1e-14)
        assert regularized_incomplete_beta(1, 2.5, x) == pytest.approx(
            1 - (1 - x) ** 2.5, abs=1e-14
        )
    with pytest.raises(ValueError):
        regularized_incomplete_beta(0, 1, 0.5)


@given(
    p=st.floats(min_value=0.51, max_value=0.999),
    df=st.floats(min_value=0.5, max_value=500),
)
def test_quantile_inverts_cdf(p: float, df: float) -> None:
    assert student_t_cdf(student_t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)


def test_gate_hand_computed() -> None:
    # diffs = [1, -1, 2, 0]: mean 0.5, sample sd sqrt(5/3), se = sd/2, t_{0.975,3} = 3.182446305.
    cand = [11.0, 9.0, 12.0, 10.0]
    inc = [10.0, 10.0, 10.0, 10.0]
    res = paired_return_gate(cand, inc, margin=2.0, min_episodes=4)
    se = math.sqrt(5 / 3) / 2
    assert res.episodes == 4
    assert res.mean_difference == pytest.approx(0.5)
    assert res.stdev_difference == pytest.approx(math.sqrt(5 / 3))
    assert res.standard_error == pytest.approx(se)
    assert res.t_quantile == pytest.approx(3.1824463053, rel=1e-9)
    assert res.lower_bound == pytest.approx(0.5 - 3.1824463053 * se, rel=1e-9)  # ≈ -1.554
    assert res.candidate_mean == 10.5 and res.incumbent_mean == 10.0
    assert res.passed is True
    # The same data fails a tighter margin.
    assert paired_return_gate(cand, inc, margin=1.5, min_episodes=4).passed is False


def test_gate_equal_policies_pass_with_zero_margin() -> None:
    returns = np.linspace(-5, 5, 10)
    res = paired_return_gate(returns, returns, margin=0.0, min_episodes=10)
    assert res.stdev_difference == 0.0 and res.lower_bound == 0.0 and res.passed


def test_gate_worse_candidate_fails() -> None:
    rng = np.random.default_rng(0)
    inc = rng.normal(10.0, 1.0, size=40)
    cand = inc - 1.0 + rng.normal(0.0, 0.1, size=40)
    res = paired_return_gate(cand, inc, margin=0.5, min_episodes=20)
    assert res.passed is False and res.lower_bound < -0.5
    assert paired_return_gate(cand, inc, margin=1.5, min_episodes=20).passed is True


def test_gate_pairing_cancels_episode_noise() -> None:
    # Huge between-episode variance, tiny paired difference: the paired gate is decisive.
    rng = np.random.default_rng(1)
    inc = rng.normal(0.0, 100.0, size=30)
    cand = inc + 0.2 + rng.normal(0.0, 0.05, size=30)
    res = paired_return_gate(cand, inc, margin=0.0, min_episodes=30)
    assert res.passed and res.lower_bound > 0.1


def test_gate_higher_confidence_widens_interval() -> None:
    cand, inc = [1.0, 3.0, 2.0, 5.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0]
    low = paired_return_gate(cand, inc, margin=10, min_episodes=2, confidence=0.8)
    high = paired_return_gate(cand, inc, margin=10, min_episodes=2, confidence=0.99)
    assert high.lower_bound < low.lower_bound
    assert high.to_dict()["confidence"] == 0.99


def test_gate_input_errors() -> None:
    with pytest.raises(PromotionError, match="paired on the same episode seeds"):
        paired_return_gate([1, 2, 3], [1, 2], margin=0, min_episodes=2)
    with pytest.raises(PromotionError, match="3 paired episodes, min_episodes is 5"):
        paired_return_gate([1, 2, 3], [1, 2, 3], margin=0, min_episodes=5)
    with pytest.raises(PromotionError, match="min_episodes: expected at least 2"):
        paired_return_gate([1, 2, 3], [1, 2, 3], margin=0, min_episodes=1)
    with pytest.raises(PromotionError, match="margin"):
        paired_return_gate([1, 2, 3], [1, 2, 3], margin=-1, min_episodes=2)
    with pytest.raises(PromotionError, match="confidence"):
        paired_return_gate([1, 2, 3], [1, 2, 3], margin=0, min_episodes=2, confidence=1.0)
    with pytest.raises(PromotionError, match="incumbent_returns: every return must be finite"):
        paired_return_gate([1, 2, 3], [1, float("nan"), 3], margin=0, min_episodes=2)
    with pytest.raises(PromotionError, match="1-d"):
        paired_return_gate(np.ones((1, 2)), np.ones((1, 2)), margin=0, min_episodes=2)


def test_gate_result_is_frozen_record() -> None:
    res = paired_return_gate([1.0, 2.0], [1.0, 1.0], margin=1, min_episodes=2)
    assert isinstance(res, BehaviourGateResult)
    with pytest.raises(AttributeError):
        res.passed = False  # type: ignore[misc]
