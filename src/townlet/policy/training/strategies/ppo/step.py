"""The PPO training state and one pure minibatch update (spec/reference-ppo.md §6.5–§6.6).

``ppo_minibatch_step(state, minibatch, cfg) -> (state, stats)`` is the unit a PPO epoch folds
over: loss → gradients → global-norm clip → Adam, returning a new :class:`PPOState` and the
:class:`MinibatchStats` the epoch summary accumulates.
"""

from __future__ import annotations

import functools

import attrs
import torch

from townlet._summary import record_dict, short_repr
from townlet.config import PPOConfig
from townlet.distributed.reduce import ReduceGrads, keep_local
from townlet.policy.nn.adam import Adam, AdamState, adam_for, adam_init
from townlet.policy.nn.grads import update_with_gradients, value_and_grad
from townlet.policy.nn.network import VALUE_HEAD_KEYS, Params, init_params
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.training.strategies.ppo.analytic import ppo_loss_and_grads
from townlet.policy.training.strategies.ppo.functional import (
    DemoRows,
    LossTerms,
    PPOMinibatch,
    ppo_loss,
)
from townlet.policy.training.strategies.ppo.stats import (
    STATS_FIELDS,
    MinibatchStats,
    stats_from_values,
)

__all__ = [
    "STATS_FIELDS",
    "MinibatchStats",
    "PPOState",
    "init_ppo_state",
    "ppo_minibatch_step",
    "ppo_minibatch_update",
    "stats_from_values",
]


@attrs.frozen(kw_only=True, eq=False)
class PPOState:
    """Everything a PPO update depends on.

    ``seed`` is the run seed: random helpers derive their generators from it and counters
    (``townlet.policy.nn.rng.stream_generator(seed, stream, ...)``), so the state holds no mutable
    generator. ``updates`` counts minibatch updates applied so far (across value-only ones too).

    The run counters of reference-ppo §12 travel here too, so that passing a returned state back
    continues a run: ``steps`` (transitions trained on, cumulative), ``log_stream_offset``
    (epochs run, cumulative; also the epoch counter minibatch permutations derive from) and
    ``cycle_id`` (−1 before the first rollout run).
    """

    __repr__ = short_repr
    to_dict = record_dict

    spec: NetworkSpec
    params: Params
    adam_state: AdamState
    seed: int = attrs.field(validator=attrs.validators.ge(0))
    updates: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    steps: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    log_stream_offset: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    cycle_id: int = attrs.field(default=-1, validator=attrs.validators.ge(-1))


def init_ppo_state(spec: NetworkSpec, *, seed: int, params: Params | None = None) -> PPOState:
    """A fresh PPO state: ``params`` (e.g. from BC or a checkpoint) or ``init_params(spec, seed)``,
    with zero Adam moments."""
    params = init_params(spec, seed) if params is None else params
    return PPOState(spec=spec, params=params, adam_state=adam_init(params), seed=seed)


def ppo_minibatch_update(
    state: PPOState,
    minibatch: PPOMinibatch,
    cfg: PPOConfig,
    *,
    value_only: bool = False,
    reduce_grads: ReduceGrads = keep_local,
    adam: Adam | None = None,
    donate: bool = False,
    demo: DemoRows | None = None,
) -> tuple[PPOState, torch.Tensor]:
    """:func:`ppo_minibatch_step` without reading the stats back: the new state and a float
    tensor of the :data:`STATS_FIELDS` (shape ``(10,)``), still on the device.

    A loop that runs many updates stacks these vectors and reads them back once
    (:func:`stats_from_values`), instead of paying a device sync per minibatch.

    ``adam`` is the optimizer (default ``make_adam(AdamConfig(lr=cfg.learning_rate))``).
    ``donate=True`` hands ``state``'s parameter and moment tensors to the update, which then
    writes them in place (no copy): pass it only for a state the caller made and will not read
    again — in a fold, every update after the first. ``demo``: expert demonstration rows the
    BC term clones instead of the minibatch's own actions (:func:`~townlet.policy.training.
    strategies.ppo.functional.ppo_loss`).
    """
    new_state, values, _rows = _update(
        state, minibatch, cfg, value_only, reduce_grads, adam=adam, donate=donate, demo=demo
    )
    return new_state, values


def _update(
    state: PPOState,
    minibatch: PPOMinibatch,
    cfg: PPOConfig,
    value_only: bool,
    reduce_grads: ReduceGrads,
    *,
    adam: Adam | None = None,
    donate: bool = False,
    demo: DemoRows | None = None,
) -> tuple[PPOState, torch.Tensor, int]:
    if value_only or demo is not None:
        # Critic warm-up and the expert-demonstration BC term take autograd's gradient: the
        # written-out one covers the plain PPO loss only.
        loss_fn = functools.partial(
            ppo_loss,
            minibatch=minibatch,
            cfg=cfg,
            spec=state.spec,
            value_only=value_only,
            demo=demo,
        )
        total, terms, grads = value_and_grad(
            loss_fn, state.params, wrt=VALUE_HEAD_KEYS if value_only else None
        )
        parts = _term_values(terms)
    else:
        # The gradient written out (ppo/analytic.py): the same numbers as autograd's to
        # float32 rounding, without building a graph per minibatch.
        total, parts, grads = ppo_loss_and_grads(state.params, minibatch, cfg, spec=state.spec)
    adv = minibatch.advantages
    local = reduce_grads is keep_local and adv.numel() > 1
    if local:
        # One process: no pooling, so the stats vector is stacked once after the update.
        adv_std, adv_mean = torch.std_mean(adv, correction=0)
        means, rows = total, len(minibatch)
    else:
        means = _pooled_means(total, parts, adv)
        grads, means, rows = reduce_grads(grads, means, len(minibatch))
    update = (adam if adam is not None else adam_for(cfg.learning_rate)).update
    params, adam_state, grad_norm = update_with_gradients(
        update,
        state.params,
        grads,
        state.adam_state,
        max_grad_norm=cfg.max_grad_norm,
        donate=donate,
    )
    if local:
        values = torch.stack([total, *parts, grad_norm.to(total.dtype), adv_mean, adv_std])
    else:
        values = _pooled_values(means, grad_norm.to(total.dtype))
    new_state = attrs.evolve(state, params=params, adam_state=adam_state, updates=state.updates + 1)
    return new_state, values, rows


def _pooled_means(
    total: torch.Tensor, parts: tuple[torch.Tensor, ...], adv: torch.Tensor
) -> torch.Tensor:
    """Per-row means, so that reduce_grads can pool them over ranks: the advantage std travels
    as E[mean²] and E[std²], for the pooled variance E[std²] + E[mean²] − mean²."""
    adv_mean = adv.mean()
    adv_std = adv.std(unbiased=False) if adv.numel() > 1 else torch.zeros_like(adv.sum())
    return torch.stack([total, *parts, adv_mean, adv_mean * adv_mean, adv_std**2])


def _pooled_values(means: torch.Tensor, grad_norm: torch.Tensor) -> torch.Tensor:
    pooled_var = means[9] + torch.clamp(means[8] - means[7] * means[7], min=0.0)
    values = torch.cat([means[:7], grad_norm.reshape(1), means[7:8]])
    return torch.cat([values, pooled_var.sqrt().reshape(1)])


def _term_values(terms: LossTerms) -> tuple[torch.Tensor, ...]:
    return (
        terms.policy,
        terms.value,
        terms.entropy,
        terms.bc,
        terms.clip_fraction,
        terms.approx_kl,
    )


def ppo_minibatch_step(
    state: PPOState,
    minibatch: PPOMinibatch,
    cfg: PPOConfig,
    *,
    value_only: bool = False,
    reduce_grads: ReduceGrads = keep_local,
    adam: Adam | None = None,
    donate: bool = False,
) -> tuple[PPOState, MinibatchStats]:
    """One PPO update on ``minibatch``: new state and stats; ``state`` and ``minibatch`` unchanged.

    Adam uses ``cfg.learning_rate`` with torch's default betas/eps; gradients are clipped to
    ``cfg.max_grad_norm`` (0 disables). With ``value_only`` only the value head is updated, on
    ``value_loss_coef · value_loss`` (critic warm-up); the trunk, the policy head and their
    Adam moments are left as they were. ``reduce_grads`` is the data-parallel collective
    (:mod:`townlet.distributed.reduce`; the identity by default): with it, the update and the
    stats are those of the global minibatch, the union of every rank's ``minibatch``.
    ``adam`` and ``donate`` as :func:`ppo_minibatch_update` (with ``donate``, ``state`` is
    given up).
    """
    new_state, values, rows = _update(
        state, minibatch, cfg, value_only, reduce_grads, adam=adam, donate=donate
    )
    # One tolist: a single device sync for all stats.
    return new_state, stats_from_values(values.tolist(), rows)
