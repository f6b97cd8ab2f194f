"""Behaviour cloning as one pure minibatch update (spec/reference-bc_anneal_promotion.md §3).

Shares the network (:func:`~townlet.policy.nn.network.apply`), the gradient helper and the pure
Adam with PPO; only the loss differs: cross-entropy of the logits against the expert actions.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from townlet._summary import record_dict, short_repr
from townlet.config import BCConfig
from townlet.distributed.reduce import ReduceGrads, keep_local
from townlet.policy.nn.adam import AdamState, adam_for, adam_init
from townlet.policy.nn.analytic import backward, forward
from townlet.policy.nn.grads import update_with_gradients
from townlet.policy.nn.network import Params, apply, init_params
from townlet.policy.nn.spec import NetworkSpec

BCBatch = tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]
"""``(maps (N, C, H, W) or None, features (N, D), actions int64 (N,))``."""


@attrs.frozen(kw_only=True, eq=False)
class BCState:
    """Everything a BC update depends on; ``seed`` feeds derived shuffles/splits, ``updates``
    counts minibatch updates so far."""

    __repr__ = short_repr
    to_dict = record_dict

    spec: NetworkSpec
    params: Params
    adam_state: AdamState
    seed: int = attrs.field(validator=attrs.validators.ge(0))
    updates: int = attrs.field(default=0, validator=attrs.validators.ge(0))


def init_bc_state(spec: NetworkSpec, *, seed: int, params: Params | None = None) -> BCState:
    """A fresh BC state: ``params`` or ``init_params(spec, seed)``, zero Adam moments."""
    params = init_params(spec, seed) if params is None else params
    return BCState(spec=spec, params=params, adam_state=adam_init(params), seed=seed)


@attrs.frozen(kw_only=True)
class BCStats:
    """One BC update's numbers, for the parameters before the update.

    ``loss`` is the mean cross-entropy; ``correct`` the count of argmax predictions equal to the
    action; ``samples`` the minibatch length; ``grad_norm`` the global gradient L2 norm (BC does
    not clip, as the reference).
    """

    loss: float
    correct: int
    samples: int
    grad_norm: float

    @property
    def accuracy(self) -> float:
        """``correct / samples`` (0.0 for an empty minibatch)."""
        return self.correct / self.samples if self.samples else 0.0


def bc_loss(
    params: Params, batch: BCBatch, *, spec: NetworkSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of ``params``' logits against the actions, and the correct count
    (a detached int64 0-d tensor)."""
    maps, features, actions = batch
    logits, _values = apply(params, maps, features, spec=spec)
    loss = F.cross_entropy(logits, actions)
    correct = (logits.detach().argmax(dim=-1) == actions).sum()
    return loss, correct


BC_STATS_FIELDS: tuple[str, ...] = ("loss", "accuracy", "grad_norm")
"""The order of the entries of the stats vector :func:`bc_minibatch_update` returns."""


def bc_loss_and_grads(
    params: Params, batch: BCBatch, *, spec: NetworkSpec
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, correct, grads)`` of :func:`bc_loss` with the gradient written out
    (:mod:`townlet.policy.nn.analytic`): d(mean cross-entropy)/d logits = (softmax − onehot)/N.
    Only the parameters the logits depend on get a gradient (not the value head, nor a
    separate critic's trunk); agrees with autograd to float32 rounding."""
    maps, features, actions = batch
    acts = forward(params, maps, features, spec=spec, values=False)
    loss = F.cross_entropy(acts.logits, actions)
    correct = (acts.logits.argmax(dim=-1) == actions).sum()
    log_probs = torch.log_softmax(acts.logits, dim=-1)
    grad_log_probs = torch.zeros_like(log_probs).scatter_(
        -1, actions.unsqueeze(-1), -1.0 / max(int(actions.shape[0]), 1)
    )
    grad_logits = torch._log_softmax_backward_data(grad_log_probs, log_probs, -1, log_probs.dtype)
    return loss, correct, backward(params, acts, grad_logits, None, spec=spec)


def _bc_update(
    state: BCState, batch: BCBatch, cfg: BCConfig, reduce_grads: ReduceGrads, donate: bool
) -> tuple[BCState, torch.Tensor, int]:
    loss, correct, local_grads = bc_loss_and_grads(state.params, batch, spec=state.spec)
    rows = int(batch[2].shape[0])
    # The accuracy travels as a per-row mean so that reduce_grads can pool it over ranks.
    means = torch.stack([loss, correct.to(loss.dtype) / max(rows, 1)])
    grads, means, rows = reduce_grads(local_grads, means, rows)
    params, adam_state, grad_norm = update_with_gradients(
        adam_for(cfg.learning_rate, cfg.weight_decay).update,
        state.params,
        grads,
        state.adam_state,
        donate=donate,
    )
    values = torch.cat([means, grad_norm.to(loss.dtype).reshape(1)])
    new_state = attrs.evolve(state, params=params, adam_state=adam_state, updates=state.updates + 1)
    return new_state, values, rows


def bc_minibatch_update(
    state: BCState,
    batch: BCBatch,
    cfg: BCConfig,
    *,
    reduce_grads: ReduceGrads = keep_local,
    donate: bool = False,
) -> tuple[BCState, torch.Tensor]:
    """:func:`bc_minibatch_step` without reading the stats back: the new state and a float
    tensor of the :data:`BC_STATS_FIELDS` (shape ``(3,)``; with ``reduce_grads`` the global
    minibatch's), still on the device, so that an epoch can stack them and read them back once."""
    new_state, values, _rows = _bc_update(state, batch, cfg, reduce_grads, donate)
    return new_state, values


def bc_stats_from_values(values: list[float], samples: int) -> BCStats:
    """The :class:`BCStats` of one update from its read-back stats vector and row count."""
    return BCStats(
        loss=values[0], correct=round(values[1] * samples), samples=samples, grad_norm=values[2]
    )


def bc_minibatch_step(
    state: BCState,
    batch: BCBatch,
    cfg: BCConfig,
    *,
    reduce_grads: ReduceGrads = keep_local,
    donate: bool = False,
) -> tuple[BCState, BCStats]:
    """One BC update: Adam(lr, weight_decay from ``cfg``) on the cross-entropy of ``batch``.

    Returns the new state and stats; ``state`` and ``batch`` are unchanged. The value head is not
    part of the BC loss and is left untouched (as torch.optim.Adam skips parameters without a
    gradient in the reference), moments included. ``reduce_grads`` is the data-parallel
    collective (identity by default): with it the update and stats are the global minibatch's.
    ``donate=True`` gives ``state``'s tensors to the update to write in place (a fold's updates
    after its first; see ``make_adam``).
    """
    new_state, values, rows = _bc_update(state, batch, cfg, reduce_grads, donate)
    # One tolist: a single device sync for all stats.
    return new_state, bc_stats_from_values(values.tolist(), rows)
