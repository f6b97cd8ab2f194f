"""The PPO minibatch update under the opt-in ``compile`` setting. Needs torch.

``make_ppo_update(mode)`` returns an update with the signature of
:func:`~townlet.policy.training.strategies.ppo.step.ppo_minibatch_update`: that function
itself for ``"none"``, else a :class:`~townlet.policy.nn.compiled.CompiledUpdate` (see that
module for the modes and the eager fallback). Build one per run and pass it to every epoch
(``ppo_epoch(..., minibatch_update=)``): it keeps the compiled variants, which cost seconds
(Inductor) or a capture (CUDA graph) to make.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable

import torch

from townlet.config import PPOConfig
from townlet.policy.nn.adam import AdamConfig
from townlet.policy.nn.compiled import UpdateAdapter, UpdateCase, compile_update, static_config
from townlet.policy.nn.network import VALUE_HEAD_KEYS, Params
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.nn.update_program import GradMethod, Inputs, UpdateProgram, UpdateRule
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch, ppo_loss_parts
from townlet.policy.training.strategies.ppo.step import PPOState, ppo_minibatch_update

PPOUpdate = Callable[..., tuple[PPOState, torch.Tensor]]
"""``update(state, minibatch, cfg, *, value_only=False) -> (state, STATS_FIELDS vector)``."""


def ppo_loss_vector(
    params: Params, inputs: Inputs, *, spec: NetworkSpec, cfg: PPOConfig, value_only: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`ppo_loss_parts` over ``inputs`` = the :class:`PPOMinibatch` fields in order: the
    total and ``[policy, value, entropy, bc, clip_fraction, approx_kl, adv mean, adv std]``."""
    maps, features, actions, old_log_probs, advantages, returns, old_values = inputs
    assert features is not None and actions is not None and old_log_probs is not None
    assert advantages is not None and returns is not None and old_values is not None
    total, parts = ppo_loss_parts(
        params,
        maps,
        features,
        actions,
        old_log_probs,
        advantages,
        returns,
        old_values,
        cfg,
        spec=spec,
        value_only=value_only,
    )
    adv = advantages.detach()
    adv_std = adv.std(unbiased=False) if adv.numel() > 1 else torch.zeros_like(adv.sum())
    return total, torch.stack([*parts, adv.mean(), adv_std])


def ppo_stats(total: torch.Tensor, aux: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
    """The :data:`~townlet.policy.training.strategies.ppo_step.STATS_FIELDS` vector."""
    return torch.cat([total.reshape(1), aux[:6], grad_norm.to(total.dtype).reshape(1), aux[6:]])


def _ppo_case(
    state: PPOState, minibatch: PPOMinibatch, cfg: PPOConfig, value_only: bool
) -> UpdateCase:
    inputs = (
        minibatch.maps,
        minibatch.features,
        minibatch.actions,
        minibatch.old_log_probs,
        minibatch.advantages,
        minibatch.returns,
        minibatch.old_values,
    )
    key = ("ppo", state.spec, static_config(cfg), value_only)
    return UpdateCase(key=key, inputs=inputs, lr=cfg.learning_rate)


def _ppo_program(key: Hashable, names: tuple[str, ...], grads: GradMethod) -> UpdateProgram:
    assert isinstance(key, tuple)
    _tag, spec, cfg, value_only = key
    adam = AdamConfig()
    wrt = VALUE_HEAD_KEYS if value_only else names
    return UpdateProgram(
        names=names,
        rule=UpdateRule(
            wrt=tuple(wrt), max_grad_norm=cfg.max_grad_norm, betas=adam.betas, eps=adam.eps
        ),
        loss=functools.partial(ppo_loss_vector, spec=spec, cfg=cfg, value_only=value_only),
        stats=ppo_stats,
        grads=grads,
    )


PPO_ADAPTER = UpdateAdapter(describe=_ppo_case, build=_ppo_program)


def make_ppo_update(mode: str = "none", *, emulate_graphs: bool = False) -> PPOUpdate:
    """The PPO minibatch update for compile ``mode``: ``ppo_minibatch_update`` for ``"none"``,
    else a compiled update with its signature (eager fallback with one warning)."""
    if mode == "none" and not emulate_graphs:
        return ppo_minibatch_update
    return compile_update(ppo_minibatch_update, PPO_ADAPTER, mode, emulate_graphs=emulate_graphs)
