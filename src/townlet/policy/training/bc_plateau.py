"""Behaviour cloning trained to its validation plateau: the fair BC baseline.

``train_bc_to_plateau(samples, cfg=..., seed=...)`` runs the same epochs as
:func:`~townlet.policy.training.strategies.bc.train_bc` (same split, same minibatches, same
Adam), measures the held-out cross-entropy after every epoch, and stops once it has not improved
by ``min_delta`` for ``patience`` epochs (or at ``max_epochs``). It returns the parameters of the
best epoch. A comparison of RL fine-tuning against BC is only fair against this BC: a BC stopped
after a few epochs is an easy target (issue #14 measured a quick demo's +36.5% over a 3-epoch BC
shrink to +14.8% over a 10-epoch one).

This module imports without torch; calling it needs torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from townlet._validators import check_int_arg
from townlet.config import BCConfig
from townlet.errors import ConfigError
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay.sample import ReplaySample

if TYPE_CHECKING:
    from townlet.policy.nn.network import Params


@attrs.frozen(kw_only=True, eq=False)
class BCPlateau:
    """A BC run stopped at its validation plateau: ``params``/``spec`` of the ``best_epoch``
    (1-based), its held-out ``val_accuracy`` and ``val_loss``, the ``epochs`` actually run and
    the per-epoch held-out losses ``val_losses``."""

    params: Params
    spec: NetworkSpec
    best_epoch: int
    epochs: int
    val_accuracy: float
    val_loss: float
    val_losses: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """The numbers (no parameters), JSON-ready."""
        return {
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "val_accuracy": self.val_accuracy,
            "val_loss": self.val_loss,
            "val_losses": list(self.val_losses),
        }


def train_bc_to_plateau(
    samples: Sequence[ReplaySample],
    *,
    cfg: BCConfig | None = None,
    seed: int = 0,
    max_epochs: int = 60,
    patience: int = 5,
    min_delta: float = 1e-3,
) -> BCPlateau:
    """Clone ``samples`` until the held-out loss stops improving (see the module docstring).

    Raises ``ConfigError`` when ``cfg.val_fraction`` is 0 (no held-out frames to find a plateau
    on) or for bad bounds, ``TorchNotAvailableError`` without torch.
    """
    from townlet.policy.training.strategies.ppo import require_torch

    require_torch("train_bc_to_plateau")
    from townlet.policy.training.strategies.bc import epoch as bc_loop
    from townlet.policy.training.strategies.bc.step import init_bc_state
    from townlet.policy.training.strategies.bc.train import load_bc_inputs
    from townlet.policy.training.strategies.ppo import start as ppo_init

    cfg = BCConfig() if cfg is None else cfg
    check_int_arg("seed", seed, 0)
    check_int_arg("max_epochs", max_epochs, 1)
    check_int_arg("patience", patience, 1)
    if cfg.val_fraction <= 0.0:
        raise ConfigError("training.bc.val_fraction: a plateau needs held-out frames (> 0)")
    inputs = load_bc_inputs(list(samples), cfg)
    spec, params = ppo_init.initial_params(inputs.shape, label=inputs.source, seed=seed)
    train, val = bc_loop.split_frames(inputs.frames, cfg.val_fraction, seed)
    assert val is not None  # val_fraction > 0
    state = init_bc_state(spec, seed=seed, params=params)
    best: tuple[float, float, int, Params] | None = None
    losses: list[float] = []
    for epoch in range(max_epochs):
        batches = bc_loop.bc_batches(train, cfg.batch_size, seed=state.seed, epoch=epoch)
        state, _ = bc_loop.bc_epoch(state, batches, cfg)
        accuracy, loss = bc_loop.bc_evaluate(state.params, val, spec=spec)
        losses.append(loss)
        if best is None or loss < best[0] - min_delta:
            best = (loss, accuracy, epoch + 1, state.params)
        elif epoch + 1 - best[2] >= patience:
            break
    assert best is not None
    return BCPlateau(
        params=best[3],
        spec=spec,
        best_epoch=best[2],
        epochs=len(losses),
        val_accuracy=best[1],
        val_loss=best[0],
        val_losses=tuple(losses),
    )
