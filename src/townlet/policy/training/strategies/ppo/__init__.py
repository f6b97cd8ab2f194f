"""PPO: one minibatch step, one epoch fold for replay and online data, and the drivers.

Modules: ``functional`` (GAE, minibatches, the loss), ``step`` (``PPOState``,
``ppo_minibatch_step``), ``stats`` (``MinibatchStats``), ``epoch`` (``ppo_epoch``), ``replay``
(prepared replay batches, ``replay_epoch``, ``fit_ppo``), ``start`` (the initial state),
``checkpoint``, ``summary`` (epoch telemetry), ``collect`` / ``online_step`` (online
rollouts and updates) and the drivers ``train`` (``train_ppo``) and ``online``
(``train_ppo_online``). This package imports without torch; the driver names are re-exported
here (``from townlet.policy.training.strategies.ppo import train_ppo`` keeps working).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EpochCallback", "TrainResult", "require_torch", "train_ppo"]


def __getattr__(name: str) -> Any:
    # Lazily, so that importing a step module of this package does not import the driver (and
    # through it the orchestrator), which imports step modules in turn.
    if name in __all__:
        return getattr(importlib.import_module(f"{__name__}.train"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
