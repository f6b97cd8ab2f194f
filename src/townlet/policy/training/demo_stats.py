"""The demo's numbers: per-policy returns with 95% confidence intervals and the paired
differences that decide whether the final policy beat its baselines.

Every policy plays the same held-out episode seeds, so differences are paired episode by
episode (:func:`~townlet.policy.training.services.behaviour_gate.paired_return_gate`: a
two-sided Student-t interval on the mean paired difference; its lower bound > 0 means the
final policy is better at 95%). Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from townlet.policy.training.services.behaviour_gate import (
    BehaviourGateResult,
    paired_return_gate,
    student_t_quantile,
)

CONFIDENCE = 0.95
COMPARISONS = (("final", "bc"), ("final", "scripted"), ("bc", "scripted"), ("final", "random"))


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The two-sided Student-t interval of the mean of ``values`` (a point for one value)."""
    data = np.asarray(values, dtype=np.float64)
    mean = float(data.mean())
    if data.size < 2:
        return mean, mean
    half = student_t_quantile(0.5 * (1.0 + confidence), data.size - 1) * float(
        data.std(ddof=1) / math.sqrt(data.size)
    )
    return mean - half, mean + half


def paired(candidate: Sequence[float], incumbent: Sequence[float]) -> BehaviourGateResult:
    """The paired comparison of two policies' returns on the same episodes (margin 0)."""
    return paired_return_gate(candidate, incumbent, margin=0.0, min_episodes=2)


def returns_block(runs: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation part of a demo summary from ``runs`` (name → ``PolicyEvaluation`` of
    random, bc, final, scripted on the same seeds): per policy ``<name>_mean``/``_std``/
    ``_ci95``/``_returns``; the paired ``<a>_vs_<b>`` comparisons; ``improvement`` (final −
    BC) and its percentage; the ``behaviour_gate`` (final vs BC); ``mode`` and the seeds."""
    bc, final = runs["bc"], runs["final"]
    block: dict[str, Any] = {}
    for name, run in runs.items():
        block[f"{name}_mean"] = run.mean
        block[f"{name}_std"] = run.std
        block[f"{name}_ci95"] = list(mean_ci(run.returns))
        block[f"{name}_returns"] = list(run.returns)
    for a, b in COMPARISONS:
        block[f"{a}_vs_{b}"] = paired(runs[a].returns, runs[b].returns).to_dict()
    gap = final.mean - bc.mean
    return {
        **block,
        "improvement": gap,
        "improvement_pct": 100.0 * gap / abs(bc.mean) if bc.mean else None,
        "behaviour_gate": block["final_vs_bc"],
        "episodes": bc.episodes,
        "episode_ticks": bc.lengths[0],
        "mode": final.mode,
        "greedy": final.mode == "argmax",
        "seeds": list(bc.seeds),
    }


def pooled_paired(summaries: Sequence[Mapping[str, Any]], a: str, b: str) -> dict[str, Any]:
    """The paired comparison ``a − b`` over the episodes of every run seed together (each run
    seed's own held-out episodes): mean difference, its 95% interval, episodes."""
    diffs: list[float] = []
    for summary in summaries:
        returns = summary["returns"]
        diffs.extend(
            x - y for x, y in zip(returns[f"{a}_returns"], returns[f"{b}_returns"], strict=True)
        )
    low, high = mean_ci(diffs)
    return {"mean_difference": float(np.mean(diffs)), "ci95": [low, high], "episodes": len(diffs)}
