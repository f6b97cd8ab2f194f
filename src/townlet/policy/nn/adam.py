"""A pure Adam over parameter mappings, in optax's shape: ``make_adam(cfg) -> (init, update)``.

Numerically it is ``torch.optim.Adam`` (non-amsgrad, L2 ``weight_decay`` added to the gradient).
The step runs torch's fused Adam kernel (``torch._fused_adam_``: one pass over each parameter
that reads the gradient and writes the parameter and both moments). On the Townlet network, one
CPU thread, it measured about 5× cheaper than the seven ``_foreach_*`` passes and three fresh
allocations of the element-wise formulation when donated, about 2× with the copies (issue #18);
the element-wise path stays as the fallback for devices without the kernel. The fused
result differs from ``torch.optim.Adam``'s default (for-loop) algorithm only by float32 rounding
(≤ 1e-8 on the Townlet network after 100 steps).

The update is pure from the caller's point of view: inputs are never written. The fused kernel
works in place, so by default the step first copies the parameters and moments it updates. A
caller that will never look at its inputs again — a training fold whose previous state is
garbage — passes ``donate=True`` and hands their buffers over (as JAX's buffer donation): the
step then updates them in place and returns them in the new mapping, with no copy. After a
donating call the donated ``params``, ``state`` and ``grads`` hold unspecified values.

Step counts are kept per parameter, like torch's per-parameter ``state["step"]``: an update over
a subset of the parameters (e.g. a value-head warm-up) advances only that subset, and the other
parameters' moments and counts stay exactly as they were.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import attrs
import torch
from attrs import validators as v

from townlet._summary import record_dict, short_repr
from townlet.policy.nn.network import Params

# Device types torch ships a fused Adam kernel for; others take the element-wise path.
_FUSED_DEVICES = frozenset({"cpu", "cuda", "mps"})


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


class AdamUpdate(Protocol):
    """``update(grads, state, params, *, donate=False) -> (new params, new state)``."""

    def __call__(
        self,
        grads: Mapping[str, torch.Tensor],
        state: AdamState,
        params: Params,
        *,
        donate: bool = False,
    ) -> tuple[Params, AdamState]: ...


# The functional form keeps the field types real objects (not strings), so runtime type
# checkers resolve them.
Adam = NamedTuple("Adam", [("init", Callable[[Params], AdamState]), ("update", AdamUpdate)])  # noqa: UP014
Adam.__doc__ = (
    "The pair :func:`make_adam` returns: ``init(params)`` and ``update(grads, state, params)``."
)


def adam_init(params: Params) -> AdamState:
    """Zero moments and zero step counts for every parameter in ``params``."""
    return AdamState(
        steps=dict.fromkeys(params, 0),
        exp_avg={k: torch.zeros_like(p) for k, p in params.items()},
        exp_avg_sq={k: torch.zeros_like(p) for k, p in params.items()},
    )


def make_adam(cfg: AdamConfig) -> Adam:
    """Adam for ``cfg`` as an ``(init, update)`` pair of pure functions (optax's shape).

    Build it once per run: the closures carry the validated config, so the per-step call does
    no config work. ``update(grads, state, params, *, donate=False)`` returns new
    ``(params, state)``; ``grads`` may cover a subset of ``params`` — the others keep their
    value, moments and step count. With ``donate=True`` the caller gives up ``grads``,
    ``params`` and ``state`` (see the module docstring) and no copy is made. Raises
    ``KeyError`` when a gradient has no parameter or moment.
    """

    def update(
        grads: Mapping[str, torch.Tensor],
        state: AdamState,
        params: Params,
        *,
        donate: bool = False,
    ) -> tuple[Params, AdamState]:
        return _adam_step(grads, state, params, cfg, donate=donate)

    return Adam(init=adam_init, update=update)


@functools.lru_cache(maxsize=64)
def adam_for(lr: float, weight_decay: float = 0.0) -> Adam:
    """:func:`make_adam` with torch's default betas and eps, built once per setting: a step
    that is not handed its own ``Adam`` would otherwise validate an attrs config per
    minibatch, which costs microseconds."""
    return make_adam(AdamConfig(lr=lr, weight_decay=weight_decay))


def adam_update(
    grads: Mapping[str, torch.Tensor],
    state: AdamState,
    params: Params,
    cfg: AdamConfig,
    *,
    donate: bool = False,
) -> tuple[Params, AdamState]:
    """One Adam step: new ``(params, state)``; the inputs are unchanged unless ``donate``.

    The functional form of ``make_adam(cfg).update``; a loop is better served by
    :func:`make_adam` built once.
    """
    return _adam_step(grads, state, params, cfg, donate=donate)


def _adam_step(
    grads: Mapping[str, torch.Tensor],
    state: AdamState,
    params: Params,
    cfg: AdamConfig,
    *,
    donate: bool,
) -> tuple[Params, AdamState]:
    keys = list(grads)
    p = [params[k] for k in keys]
    g = [grads[k] for k in keys]
    mu = [state.exp_avg[k] for k in keys]
    nu = [state.exp_avg_sq[k] for k in keys]
    steps = [state.steps[k] + 1 for k in keys]
    if p and all(t.device.type in _FUSED_DEVICES and t.is_floating_point() for t in p):
        if not donate:
            p, mu, nu = _copies(p), _copies(mu), _copies(nu)
        _fused_step(p, g, mu, nu, steps, cfg)
    elif p:
        p, mu, nu = _foreach_step(p, g, mu, nu, steps, cfg)
    new_params = {**params, **dict(zip(keys, p, strict=True))}
    new_state = AdamState(
        steps={**state.steps, **dict(zip(keys, steps, strict=True))},
        exp_avg={**state.exp_avg, **dict(zip(keys, mu, strict=True))},
        exp_avg_sq={**state.exp_avg_sq, **dict(zip(keys, nu, strict=True))},
    )
    return new_params, new_state


def _copies(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    # One list kernel instead of a clone per tensor; x · 1.0 is exact (NaN and -0.0 included).
    return list(torch._foreach_mul(tensors, 1.0))


def _fused_step(
    p: list[torch.Tensor],
    g: list[torch.Tensor],
    mu: list[torch.Tensor],
    nu: list[torch.Tensor],
    steps: list[int],
    cfg: AdamConfig,
) -> None:
    """torch's fused kernel, in place on ``p``, ``mu``, ``nu`` (``g`` is only read)."""
    # The kernel reads each parameter's step count from a tensor on that parameter's device;
    # parameters at the same count share one.
    counts: dict[tuple[int, torch.device], torch.Tensor] = {}
    step_tensors = []
    for s, t in zip(steps, p, strict=True):
        key = (s, t.device)
        if key not in counts:
            counts[key] = torch.full((), float(s), dtype=torch.float32, device=t.device)
        step_tensors.append(counts[key])
    beta1, beta2 = cfg.betas
    with torch.no_grad():
        torch._fused_adam_(
            p,
            g,
            mu,
            nu,
            [],
            step_tensors,
            lr=cfg.lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=cfg.weight_decay,
            eps=cfg.eps,
            amsgrad=False,
            maximize=False,
        )


def _foreach_step(
    p: list[torch.Tensor],
    g: list[torch.Tensor],
    mu: list[torch.Tensor],
    nu: list[torch.Tensor],
    steps: list[int],
    cfg: AdamConfig,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """``torch.optim.Adam``'s element-wise algorithm, out of place (new lists of new tensors)."""
    beta1, beta2 = cfg.betas
    with torch.no_grad():
        if cfg.weight_decay != 0.0:
            g = list(torch._foreach_add(g, p, alpha=cfg.weight_decay))
        new_mu = list(torch._foreach_lerp(mu, g, 1.0 - beta1))
        new_nu = list(torch._foreach_mul(nu, beta2))
        torch._foreach_addcmul_(new_nu, g, g, value=1.0 - beta2)  # new_nu is ours
        denom = torch._foreach_sqrt(new_nu)
        torch._foreach_div_(denom, [(1.0 - beta2**s) ** 0.5 for s in steps])
        torch._foreach_add_(denom, cfg.eps)
        step_sizes = [-cfg.lr / (1.0 - beta1**s) for s in steps]
        new_p = list(torch._foreach_addcdiv(p, new_mu, denom, step_sizes))
    return new_p, new_mu, new_nu
