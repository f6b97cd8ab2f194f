"""The BC minibatch update under the opt-in ``compile`` setting. Needs torch.

``make_bc_update(mode)`` returns an update with the signature of
:func:`~townlet.policy.training.strategies.bc.step.bc_minibatch_update`: that function itself
for ``"none"``, else a :class:`~townlet.policy.nn.compiled.CompiledUpdate` (see that module).
Build one per run and pass it to every epoch (``bc_epoch(..., update=)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable

import torch
import torch.nn.functional as F

from townlet.config import BCConfig
from townlet.policy.nn.adam import AdamConfig
from townlet.policy.nn.compiled import UpdateAdapter, UpdateCase, compile_update, static_config
from townlet.policy.nn.network import Params, apply, value_keys
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.nn.update_program import GradMethod, Inputs, UpdateProgram, UpdateRule
from townlet.policy.training.strategies.bc.step import BCBatch, BCState, bc_minibatch_update

BCUpdate = Callable[..., tuple[BCState, torch.Tensor]]
"""``update(state, batch, cfg) -> (state, BC_STATS_FIELDS vector)``."""


def bc_loss_vector(
    params: Params, inputs: Inputs, *, spec: NetworkSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """The BC cross-entropy over ``inputs = (maps, features, actions)`` and ``[accuracy]`` (the
    share of correct argmax predictions, as ``bc_minibatch_update`` reports it)."""
    maps, features, actions = inputs
    assert features is not None and actions is not None
    logits, _values = apply(params, maps, features, spec=spec)
    loss = F.cross_entropy(logits, actions)
    correct = (logits.detach().argmax(dim=-1) == actions).sum().to(loss.dtype)
    return loss, (correct / max(int(actions.shape[0]), 1)).reshape(1)


def bc_stats(loss: torch.Tensor, aux: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
    """The :data:`~townlet.policy.training.strategies.bc.step.BC_STATS_FIELDS` vector."""
    return torch.cat([loss.reshape(1), aux, grad_norm.to(loss.dtype).reshape(1)])


def _bc_case(state: BCState, batch: BCBatch, cfg: BCConfig, _value_only: bool) -> UpdateCase:
    key = ("bc", state.spec, static_config(cfg))
    return UpdateCase(key=key, inputs=tuple(batch), lr=cfg.learning_rate)


def _bc_program(key: Hashable, names: tuple[str, ...], grads: GradMethod) -> UpdateProgram:
    assert isinstance(key, tuple)
    _tag, spec, cfg = key
    critic = value_keys(spec)
    adam = AdamConfig()
    rule = UpdateRule(
        wrt=tuple(k for k in names if k not in critic),
        betas=adam.betas,
        eps=adam.eps,
        weight_decay=cfg.weight_decay,
    )
    return UpdateProgram(
        names=names,
        rule=rule,
        loss=functools.partial(bc_loss_vector, spec=spec),
        stats=bc_stats,
        grads=grads,
    )


BC_ADAPTER = UpdateAdapter(describe=_bc_case, build=_bc_program)


def make_bc_update(mode: str = "none", *, emulate_graphs: bool = False) -> BCUpdate:
    """The BC minibatch update for compile ``mode``: ``bc_minibatch_update`` for ``"none"``,
    else a compiled update with its signature (eager fallback with one warning)."""
    if mode == "none" and not emulate_graphs:
        return bc_minibatch_update
    return compile_update(bc_minibatch_update, BC_ADAPTER, mode, emulate_graphs=emulate_graphs)
