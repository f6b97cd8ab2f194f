"""Gradients of a loss over a parameter mapping, global-norm clipping, and the update step.

:func:`value_and_grad` takes gradients with ``torch.autograd.grad`` over fresh leaf tensors
(detached views of the stored parameters): measured within a few percent of imperative
``loss.backward()``, where ``torch.func.grad_and_value`` cost ~45 % more per PPO minibatch
(docs/nn.md). The eager PPO and BC updates take the same gradients written out instead
(:mod:`townlet.policy.nn.analytic`); either way they pass through the update's
``reduce_grads``, where a data-parallel all-reduce goes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

import torch

from townlet.policy.nn.adam import AdamConfig, AdamState, AdamUpdate, make_adam
from townlet.policy.nn.network import Params

Grads = Mapping[str, torch.Tensor]
"""Gradients by parameter name (a subset of a :data:`Params`' keys)."""

Aux = TypeVar("Aux")


def value_and_grad(
    loss_fn: Callable[[Params], tuple[torch.Tensor, Aux]],
    params: Params,
    *,
    wrt: Collection[str] | None = None,
) -> tuple[torch.Tensor, Aux, Grads]:
    """Evaluate ``loss_fn(params) -> (loss, aux)`` and the gradient of ``loss``.

    ``wrt`` names the parameters to differentiate (default: all); the others enter the loss as
    constants, so no autograd graph is built through them. Returns the detached loss, ``aux``
    as ``loss_fn`` returned it, and the gradients for ``wrt``. ``params`` is not modified.
    """
    names = list(params) if wrt is None else list(wrt)
    leaves = {k: params[k].detach().requires_grad_(True) for k in names}
    loss, aux = loss_fn({**params, **leaves})
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return loss.detach(), aux, dict(zip(names, grads, strict=True))


def global_norm(grads: Grads) -> torch.Tensor:
    """The L2 norm of all gradients taken together, as a 0-d tensor."""
    norms = torch._foreach_norm(list(grads.values()))
    total: torch.Tensor = torch.linalg.vector_norm(torch.stack(norms))
    return total


def clip_by_global_norm(
    grads: Grads, max_norm: float, *, donate: bool = False
) -> tuple[Grads, torch.Tensor]:
    """Scale ``grads`` so their global L2 norm is at most ``max_norm``, as ``clip_grad_norm_``.

    Returns ``(clipped grads, pre-clip norm)``; the norm is a 0-d tensor (no device sync).
    ``max_norm == 0`` disables clipping (the reference's semantics) and returns ``grads`` as
    given with their norm. The scale is ``min(1, max_norm / (norm + 1e-6))``, torch's formula.
    ``donate=True`` scales the given gradient tensors in place (the caller gives them up)
    instead of allocating new ones; the arithmetic is the same.
    """
    norm = global_norm(grads)
    if max_norm <= 0.0:
        return grads, norm
    scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    if donate:
        torch._foreach_mul_(list(grads.values()), scale)
        return grads, norm
    clipped = torch._foreach_mul(list(grads.values()), scale)
    return dict(zip(grads, clipped, strict=True)), norm


def apply_gradients(
    params: Params,
    grads: Grads,
    adam_state: AdamState,
    adam_cfg: AdamConfig,
    *,
    max_grad_norm: float = 0.0,
    donate: bool = False,
) -> tuple[Params, AdamState, torch.Tensor]:
    """Clip ``grads`` by global norm, then take one Adam step.

    Returns ``(new params, new Adam state, pre-clip gradient norm)``; inputs are unchanged
    unless ``donate`` (see :func:`update_with_gradients`).
    """
    update = make_adam(adam_cfg).update
    return update_with_gradients(
        update, params, grads, adam_state, max_grad_norm=max_grad_norm, donate=donate
    )


def update_with_gradients(
    update: AdamUpdate,
    params: Params,
    grads: Grads,
    adam_state: AdamState,
    *,
    max_grad_norm: float = 0.0,
    donate: bool = False,
) -> tuple[Params, AdamState, torch.Tensor]:
    """Clip ``grads`` by global norm, then apply ``update`` (from :func:`make_adam`).

    Returns ``(new params, new Adam state, pre-clip gradient norm)``. With ``donate=False``
    nothing given is modified. With ``donate=True`` the caller hands over ``params``, ``grads``
    and ``adam_state`` — it will not read them again — and they are updated in place: no copy,
    no allocation (the step a training fold takes on the state it made itself).
    """
    clipped, norm = clip_by_global_norm(grads, max_grad_norm, donate=donate)
    new_params, new_state = update(clipped, adam_state, params, donate=donate)
    return new_params, new_state, norm
