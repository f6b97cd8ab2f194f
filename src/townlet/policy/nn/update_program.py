"""One minibatch update (loss → gradients → global-norm clip → Adam) as a function of tensors only.

The eager updates (:func:`~townlet.policy.nn.grads.apply_gradients` over an
:class:`~townlet.policy.nn.adam.AdamState`) take the learning rate and the Adam step counts as
Python numbers, so a compiler or a CUDA graph would bake them in: the bias correction of step 1
would be replayed forever. Here the per-parameter factors they make — the step size
``−lr / (1 − β1^t)`` and ``√(1 − β2^t)`` — travel as one tensor (:func:`adam_scalars`, computed
on the host from the integer step counts, in float64 as the eager update computes them, with
no device sync), which is what lets :mod:`townlet.policy.nn.compiled` compile the update once
and replay it with any learning rate at any step. The loss must build no ``attrs`` record
inside the traced code (a frozen record's ``__init__`` is a graph break for ``torch.compile``),
hence :func:`~townlet.policy.training.strategies.ppo.functional.ppo_loss_parts`. The
arithmetic follows :func:`~townlet.policy.nn.adam.adam_update` operation for operation, so the
two agree to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import attrs
import torch

from townlet.policy.nn.network import Params

Inputs = tuple[torch.Tensor | None, ...]
"""A minibatch as a tuple of tensors (None for an absent field, e.g. maps without a map)."""

LossFn = Callable[[Params, Inputs], tuple[torch.Tensor, torch.Tensor]]
"""``loss(params, inputs) -> (scalar loss, 1-d vector of auxiliary stats)``."""

StatsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``stats(loss, aux, grad_norm) -> 1-d stats vector`` (the update's read-back)."""

GradMethod = Literal["autograd", "func"]

# torch.nn.utils.clip_grad_norm_'s epsilon, as grads.clip_by_global_norm.
_CLIP_EPS = 1e-6


@attrs.frozen(kw_only=True)
class UpdateRule:
    """The static part of an update: the parameters it trains (``wrt``, in order), the global
    gradient-norm clip (0 disables) and the Adam hyperparameters other than the learning rate."""

    wrt: tuple[str, ...]
    max_grad_norm: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0


@attrs.frozen(kw_only=True, eq=False)
class UpdateProgram:
    """Everything static about one compiled update: the parameter ``names`` (all, in the order
    the tensor lists follow), the ``rule``, the ``loss`` and how to assemble the ``stats``;
    ``grads`` picks ``torch.autograd.grad`` (what a CUDA graph captures) or ``torch.func``
    (what ``torch.compile`` traces without a graph break)."""

    names: tuple[str, ...]
    rule: UpdateRule
    loss: LossFn
    stats: StatsFn
    grads: GradMethod = "autograd"


def _loss_and_grads(
    program: UpdateProgram, params: dict[str, torch.Tensor], inputs: Inputs
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    wrt = program.rule.wrt
    if program.grads == "func":

        def partial_loss(
            leaves: dict[str, torch.Tensor],
        ) -> tuple[torch.Tensor, torch.Tensor]:
            loss, aux = program.loss({**params, **leaves}, inputs)
            return loss, aux.detach()

        leaves = {k: params[k] for k in wrt}
        grads, (loss, aux) = torch.func.grad_and_value(partial_loss, has_aux=True)(leaves)
        return loss.detach(), aux, [grads[k] for k in wrt]
    leaf_map = {k: params[k].detach().requires_grad_(True) for k in wrt}
    loss, aux = program.loss({**params, **leaf_map}, inputs)
    grad_list = torch.autograd.grad(loss, list(leaf_map.values()))
    return loss.detach(), aux.detach(), list(grad_list)


def clip_grads(
    grads: list[torch.Tensor], max_norm: float
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Clip by global L2 norm as :func:`~townlet.policy.nn.grads.clip_by_global_norm` (0
    disables); returns the grads and the pre-clip norm."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if max_norm <= 0.0:
        return grads, norm
    scale = torch.clamp(max_norm / (norm + _CLIP_EPS), max=1.0)
    return [g * scale for g in grads], norm


def adam_scalars(lr: float, steps: Sequence[int], rule: UpdateRule) -> list[float]:
    """The Adam factors of one update for parameters that have had ``steps`` updates before it:
    ``[−lr/(1 − β1^t) for each] + [√(1 − β2^t) for each]`` with ``t = steps + 1``, computed in
    float64 exactly as :func:`~townlet.policy.nn.adam.adam_update` computes its scalars."""
    beta1, beta2 = rule.betas
    after = [s + 1 for s in steps]
    return [*(-lr / (1.0 - beta1**t) for t in after), *((1.0 - beta2**t) ** 0.5 for t in after)]


def tensor_adam(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    exp_avg: Sequence[torch.Tensor],
    exp_avg_sq: Sequence[torch.Tensor],
    scalars: torch.Tensor,
    rule: UpdateRule,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """One Adam step with the learning rate and step counts in a tensor.

    ``scalars`` is :func:`adam_scalars` as a 1-d tensor of the parameters' dtype (the eager
    update rounds its float64 scalars to that dtype too). Returns new ``(params, exp_avg,
    exp_avg_sq)``; inputs unchanged.
    """
    beta1, beta2 = rule.betas
    k = len(params)
    new_p, new_m, new_v = [], [], []
    for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avg, exp_avg_sq, strict=True)):
        if rule.weight_decay != 0.0:
            g = g + rule.weight_decay * p
        m = torch.lerp(m, g, 1.0 - beta1)
        v = torch.addcmul(v * beta2, g, g, value=1.0 - beta2)
        denom = torch.sqrt(v) / scalars[k + i] + rule.eps
        # (−lr/bc1)·m/denom, evaluated left to right as addcdiv's kernel does.
        new_p.append(p + scalars[i] * m / denom)
        new_m.append(m)
        new_v.append(v)
    return new_p, new_m, new_v


def run_update(
    program: UpdateProgram,
    params: Sequence[torch.Tensor],
    exp_avg: Sequence[torch.Tensor],
    exp_avg_sq: Sequence[torch.Tensor],
    scalars: torch.Tensor,
    inputs: Inputs,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """The whole update on tensors: ``params`` in ``program.names`` order, the moments of
    ``program.rule.wrt`` in that order, ``scalars`` as :func:`tensor_adam` (for ``wrt``).

    Returns the new parameters of ``wrt`` (the others are unchanged), the new moments and the
    stats vector. Pure: nothing is written in place, so it can be compiled or captured.
    """
    by_name = dict(zip(program.names, params, strict=True))
    loss, aux, grads = _loss_and_grads(program, by_name, inputs)
    clipped, norm = clip_grads(grads, program.rule.max_grad_norm)
    trained = [by_name[k] for k in program.rule.wrt]
    new_p, new_m, new_v = tensor_adam(trained, clipped, exp_avg, exp_avg_sq, scalars, program.rule)
    return new_p, new_m, new_v, program.stats(loss, aux, norm)
