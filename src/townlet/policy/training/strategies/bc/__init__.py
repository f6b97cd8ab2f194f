"""Behaviour cloning: ``step`` (``BCState``, ``bc_minibatch_step``), ``epoch`` (``bc_epoch``,
``fit_bc``) and the driver ``train`` (``train_bc``). Imports without torch; the driver names
are re-exported here, lazily (``from townlet.policy.training.strategies.bc import train_bc`` keeps
working).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BCEpochCallback",
    "BCInputs",
    "BCRun",
    "BCSource",
    "load_bc_inputs",
    "save_bc_checkpoint",
    "train_bc",
]


def __getattr__(name: str) -> Any:
    # Lazily, so that importing a step module of this package does not import the driver (and
    # through it the orchestrator), which imports step modules in turn.
    if name in __all__:
        return getattr(importlib.import_module(f"{__name__}.train"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
