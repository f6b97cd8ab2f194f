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

from townlet.policy.training.strategies._moved import lazy_exports

__all__ = ["EpochCallback", "TrainResult", "require_torch", "train_ppo"]
__getattr__ = lazy_exports(__name__, "train", tuple(__all__))
