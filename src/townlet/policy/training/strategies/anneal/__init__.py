"""Anneal: ``step`` (``AnnealState``, ``anneal_stage_step`` over data loaded once), ``flags``
(guardrails, baselines, status), ``io`` (run directory state) and the driver ``run``
(``run_anneal``). Imports without torch; the driver names are re-exported here, lazily
(``from townlet.policy.training.strategies.anneal import run_anneal`` keeps working).
"""

from __future__ import annotations

from townlet.policy.training.strategies._moved import lazy_exports

__all__ = [
    "AnnealRun",
    "AnnealStageResult",
    "AnnealSummary",
    "anneal_payload",
    "anneal_stage_step",
    "record_run",
    "run_anneal",
    "run_anneal_with_state",
]
__getattr__ = lazy_exports(__name__, "run", tuple(__all__))
