"""Anneal: ``step`` (``AnnealState``, ``anneal_stage_step`` over data loaded once), ``flags``
(guardrails, baselines, status), ``io`` (run directory state) and the driver ``run``
(``run_anneal``). Imports without torch; the driver names are re-exported here, lazily
(``from townlet.policy.training.strategies.anneal import run_anneal`` keeps working).
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    # Lazily, so that importing a step module of this package does not import the driver (and
    # through it the orchestrator), which imports step modules in turn.
    if name in __all__:
        return getattr(importlib.import_module(f"{__name__}.run"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
