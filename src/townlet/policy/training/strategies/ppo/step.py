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
from townlet.policy.nn.adam import Adam, AdamConfig, AdamState, adam_init, make_adam
from townlet.policy.nn.grads import update_with_gradients, value_and_grad
from townlet.policy.nn.network import VALUE_HEAD_KEYS, Params, init_params
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch, ppo_loss
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


@functools.lru_cache(maxsize=64)
def _adam_for(lr: float) -> Adam:
    # Built once per learning rate: an attrs record with validators costs microseconds, and a
    # run builds one per minibatch otherwise. A loop can pass its own ``adam`` instead.
    return make_adam(AdamConfig(lr=lr))


def ppo_minibatch_update(
    state: PPOState,
    minibatch: PPOMinibatch,
    cfg: PPOConfig,
    *,
    value_only: bool = False,
    adam: Adam | None = None,
    donate: bool = False,
) -> tuple[PPOState, torch.Tensor]:
    """:func:`ppo_minibatch_step` without reading the stats back: the new state and a float
    tensor of the :data:`STATS_FIELDS` (shape ``(10,)``), still on the device.

    A loop that runs many updates stacks these vectors and reads them back once
    (:func:`stats_from_values`), instead of paying a device sync per minibatch.
    """
    loss_fn = functools.partial(
        ppo_loss, minibatch=minibatch, cfg=cfg, spec=state.spec, value_only=value_only
    )
    total, terms, grads = value_and_grad(
        loss_fn, state.params, wrt=VALUE_HEAD_KEYS if value_only else None
    )
    update = (adam if adam is not None else _adam_for(cfg.learning_rate)).update
    params, adam_state, grad_norm = update_with_gradients(
        update,
        state.params,
        grads,
        state.adam_state,
        max_grad_norm=cfg.max_grad_norm,
        donate=donate,
    )
    adv = minibatch.advantages
    adv_std = adv.std(unbiased=False) if adv.numel() > 1 else torch.zeros_like(adv.sum())
    values = torch.stack(
        [
            total,
            terms.policy,
            terms.value,
            terms.entropy,
            terms.bc,
            terms.clip_fraction,
            terms.approx_kl,
            grad_norm.to(total.dtype),
            adv.mean(),
            adv_std,
        ]
    )
    new_state = attrs.evolve(state, params=params, adam_state=adam_state, updates=state.updates + 1)
    return new_state, values


def ppo_minibatch_step(
    state: PPOState,
    minibatch: PPOMinibatch,
    cfg: PPOConfig,
    *,
    value_only: bool = False,
    adam: Adam | None = None,
    donate: bool = False,
) -> tuple[PPOState, MinibatchStats]:
    """One PPO update on ``minibatch``: new state and stats; ``state`` and ``minibatch`` unchanged.

    Adam uses ``cfg.learning_rate`` with torch's default betas/eps; gradients are clipped to
    ``cfg.max_grad_norm`` (0 disables). With ``value_only`` only the value head is updated, on
    ``value_loss_coef · value_loss`` (critic warm-up); the trunk, the policy head and their
    Adam moments are left as they were. ``adam`` and ``donate`` as :func:`ppo_minibatch_update`
    (with ``donate``, ``state`` is given up).
    """
    new_state, values = ppo_minibatch_update(
        state, minibatch, cfg, value_only=value_only, adam=adam, donate=donate
    )
    # One tolist: a single device sync for all stats.
    return new_state, stats_from_values(values.tolist(), len(minibatch))
