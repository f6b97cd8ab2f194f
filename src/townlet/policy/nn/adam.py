"""A pure Adam: ``adam_init`` / ``adam_update`` over parameter mappings (optax's shape).

Numerically it is ``torch.optim.Adam`` (the non-fused, non-amsgrad algorithm with L2
``weight_decay`` added to the gradient): the same operations in the same order, so 100 steps
agree to float32 rounding. It is out-of-place — inputs are never written — and uses
``torch._foreach_*`` list kernels, which keeps it as fast as the in-place optimizer.

Step counts are kept per parameter, like torch's per-parameter ``state["step"]``: an update over
a subset of the parameters (e.g. a value-head warm-up) advances only that subset, and the other
parameters' moments and counts stay exactly as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch
from attrs import validators as v

from townlet._summary import record_dict, short_repr
from townlet.policy.nn.network import Params


def _check_betas(_inst: object, _attr: Any, value: tuple[float, float]) -> None:
    if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
        raise ValueError(f"betas must be two floats in [0, 1), got {value!r}")


@attrs.frozen(kw_only=True)
class AdamConfig:
    """Adam hyperparameters; defaults are ``torch.optim.Adam``'s.

    ``weight_decay`` is torch's classic L2 term (``grad + weight_decay · param``), not AdamW.
    """

    lr: float = attrs.field(default=1e-3, converter=float, validator=v.gt(0.0))
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), validator=_check_betas)
    eps: float = attrs.field(default=1e-8, converter=float, validator=v.ge(0.0))
    weight_decay: float = attrs.field(default=0.0, converter=float, validator=v.ge(0.0))


@attrs.frozen(kw_only=True, eq=False)
class AdamState:
    """Adam moments and step counts, one entry per parameter name.

    ``steps[k]`` counts the updates parameter ``k`` has received; ``exp_avg`` / ``exp_avg_sq``
    are the first and second moment estimates (same shapes as the parameters).
    """

    __repr__ = short_repr
    to_dict = record_dict

    steps: Mapping[str, int]
    exp_avg: Mapping[str, torch.Tensor]
    exp_avg_sq: Mapping[str, torch.Tensor]


def adam_init(params: Params) -> AdamState:
    """Zero moments and zero step counts for every parameter in ``params``."""
    return AdamState(
        steps=dict.fromkeys(params, 0),
        exp_avg={k: torch.zeros_like(p) for k, p in params.items()},
        exp_avg_sq={k: torch.zeros_like(p) for k, p in params.items()},
    )


def adam_update(
    grads: Mapping[str, torch.Tensor], state: AdamState, params: Params, cfg: AdamConfig
) -> tuple[Params, AdamState]:
    """One Adam step: new ``(params, state)``; ``grads``, ``state`` and ``params`` are unchanged.

    ``grads`` may cover a subset of ``params``; parameters without a gradient keep their value,
    moments and step count. Raises ``KeyError`` when a gradient has no parameter or moment.
    """
    keys = list(grads)
    p = [params[k] for k in keys]
    g = [grads[k] for k in keys]
    beta1, beta2 = cfg.betas
    with torch.no_grad():
        if cfg.weight_decay != 0.0:
            g = list(torch._foreach_add(g, p, alpha=cfg.weight_decay))
        mu = torch._foreach_lerp([state.exp_avg[k] for k in keys], g, 1.0 - beta1)
        nu = torch._foreach_mul([state.exp_avg_sq[k] for k in keys], beta2)
        torch._foreach_addcmul_(nu, g, g, value=1.0 - beta2)  # nu is ours: a fresh list
        steps = [state.steps[k] + 1 for k in keys]
        denom = torch._foreach_sqrt(nu)
        torch._foreach_div_(denom, [(1.0 - beta2**s) ** 0.5 for s in steps])
        torch._foreach_add_(denom, cfg.eps)
        step_sizes = [-cfg.lr / (1.0 - beta1**s) for s in steps]
        new_p = torch._foreach_addcdiv(p, mu, denom, step_sizes)
    new_params = {**params, **dict(zip(keys, new_p, strict=True))}
    new_state = AdamState(
        steps={**state.steps, **dict(zip(keys, steps, strict=True))},
        exp_avg={**state.exp_avg, **dict(zip(keys, mu, strict=True))},
        exp_avg_sq={**state.exp_avg_sq, **dict(zip(keys, nu, strict=True))},
    )
    return new_params, new_state
