"""The behaviour gate: is the candidate's return no worse than the incumbent's (DESIGN §5.7)?

Both policies are run on the same episode seeds; the gate looks at the paired differences
``d_i = candidate_i − incumbent_i`` and the lower end of their two-sided Student-t confidence
interval, ``mean(d) − t_{(1+c)/2, n−1} · stdev(d) / √n``. The candidate passes when that lower
bound is at least ``−margin``: with confidence ``c`` it loses at most ``margin`` per episode.

Pure and torch-free. The t quantile is computed here (no scipy): the t CDF through the
regularized incomplete beta function (a continued fraction, modified Lentz), inverted by
bisection to ~1e-12 relative accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
from attrs import validators as v

from townlet.errors import PromotionError

_CF_EPS = 1e-15
_CF_TINY = 1e-300
_CF_MAX_ITER = 100_000


@attrs.frozen(kw_only=True)
class BehaviourGateResult:
    """The outcome of :func:`paired_return_gate`; returns are in the environment's reward units.

    ``lower_bound`` is ``mean_difference − t_quantile · standard_error``; ``passed`` is
    ``lower_bound >= −margin``.
    """

    passed: bool = attrs.field(validator=v.instance_of(bool))
    episodes: int = attrs.field(validator=[v.instance_of(int), v.ge(2)])
    candidate_mean: float
    incumbent_mean: float
    mean_difference: float
    stdev_difference: float = attrs.field(validator=v.ge(0.0))
    standard_error: float = attrs.field(validator=v.ge(0.0))
    t_quantile: float = attrs.field(validator=v.gt(0.0))
    lower_bound: float
    margin: float = attrs.field(validator=v.ge(0.0))
    confidence: float = attrs.field(validator=[v.gt(0.0), v.lt(1.0)])

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (field names as keys)."""
        return attrs.asdict(self)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    # Modified Lentz evaluation of the continued fraction for I_x(a, b).
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
    h = d
    for m in range(1, _CF_MAX_ITER + 1):
        m2 = 2 * m
        for coef in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + coef * d
            d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
            c = 1.0 + coef / c
            c = c if abs(c) > _CF_TINY else _CF_TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _CF_EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b)``, the regularized incomplete beta function, for ``a, b > 0`` and ``0 ≤ x ≤ 1``.

    Raises:
        ValueError: an argument is out of its domain.
    """
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"incomplete beta needs a, b > 0 and 0 <= x <= 1, got {a}, {b}, {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The fraction converges fast below the mean; above it use I_x(a,b) = 1 − I_{1−x}(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """``P(T ≤ t)`` for Student's t with ``df > 0`` degrees of freedom.

    Raises ``ValueError`` when ``df <= 0``.
    """
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if t == 0.0:
        return 0.5
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (e.g. 2.262 for 0.975, 9).

    Raises:
        ValueError: ``p`` is not in (0, 1) or ``df`` is not > 0.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def _returns(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise PromotionError(f"{name}: expected a 1-d sequence of returns, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise PromotionError(f"{name}: every return must be finite")
    return array


def _check_gate_settings(margin: float, min_episodes: int, confidence: float) -> None:
    if not (math.isfinite(margin) and margin >= 0.0):
        raise PromotionError(f"margin: expected a finite number >= 0, got {margin!r}")
    if min_episodes < 2:
        raise PromotionError(f"min_episodes: expected at least 2, got {min_episodes}")
    if not 0.0 < confidence < 1.0:
        raise PromotionError(f"confidence: expected a value in (0, 1), got {confidence!r}")


def paired_return_gate(
    candidate_returns: Sequence[float] | np.ndarray,
    incumbent_returns: Sequence[float] | np.ndarray,
    *,
    margin: float,
    min_episodes: int,
    confidence: float = 0.95,
) -> BehaviourGateResult:
    """Gate a candidate on its per-episode returns paired with the incumbent's on the same seeds.

    ``candidate_returns[i]`` and ``incumbent_returns[i]`` must come from the same episode seed.
    The confidence interval is two-sided at ``confidence`` (0.95 uses ``t_{0.975, n−1}``).

    Raises:
        PromotionError: the sequences differ in length, hold fewer than ``min_episodes`` returns,
            hold a non-finite return, or a setting is out of range (``margin < 0``,
            ``min_episodes < 2``, ``confidence`` outside (0, 1)).
    """
    _check_gate_settings(margin, min_episodes, confidence)
    candidate = _returns("candidate_returns", candidate_returns)
    incumbent = _returns("incumbent_returns", incumbent_returns)
    if candidate.shape != incumbent.shape:
        raise PromotionError(
            f"candidate_returns has {candidate.size} episodes but incumbent_returns has "
            f"{incumbent.size}; returns must be paired on the same episode seeds"
        )
    episodes = int(candidate.size)
    if episodes < min_episodes:
        raise PromotionError(
            f"candidate_returns: {episodes} paired episodes, min_episodes is {min_episodes}"
        )
    diffs = candidate - incumbent
    mean = float(diffs.mean())
    stdev = float(diffs.std(ddof=1))
    stderr = stdev / math.sqrt(episodes)
    quantile = student_t_quantile(0.5 * (1.0 + confidence), episodes - 1)
    lower = mean - quantile * stderr
    return BehaviourGateResult(
        passed=bool(lower >= -margin),
        episodes=episodes,
        candidate_mean=float(candidate.mean()),
        incumbent_mean=float(incumbent.mean()),
        mean_difference=mean,
        stdev_difference=stdev,
        standard_error=stderr,
        t_quantile=quantile,
        lower_bound=lower,
        margin=float(margin),
        confidence=float(confidence),
    )
