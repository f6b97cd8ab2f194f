"""Behaviour cloning: ``step`` (``BCState``, ``bc_minibatch_step``), ``epoch`` (``bc_epoch``,
``fit_bc``) and the driver ``train`` (``train_bc``). Imports without torch; the driver names
are re-exported here, lazily (``from townlet.policy.training.strategies.bc import train_bc`` keeps
working).
"""

from __future__ import annotations

from townlet.policy.training.strategies._moved import lazy_exports

__all__ = [
    "BCEpochCallback",
    "BCInputs",
    "BCRun",
    "BCSource",
    "load_bc_inputs",
    "save_bc_checkpoint",
    "train_bc",
]
__getattr__ = lazy_exports(__name__, "train", tuple(__all__))
