"""The network's forward pass with its activations kept, and its backward pass written out.

At the sizes townlet trains (minibatches of 32–64 rows, hidden layers of 64–256 units) a
minibatch update is dominated by per-operation overhead, not arithmetic: building and running
the autograd graph costs more than the matrix products it records. The network is a small,
fixed DAG of linear layers, so its gradient is a short list of matrix products written out
here: :func:`forward` keeps every layer's input and output, :func:`backward` turns the loss's
gradient with respect to the logits and values into the parameters' gradients. The
arithmetic is autograd's (the same kernels: ``linear`` forward, ``mm`` and ``sum`` backward,
``tanh_backward`` / ``threshold_backward``), so the gradients agree with
:func:`townlet.policy.nn.grads.value_and_grad` of the same loss to float32 rounding
(tests/test_analytic_grads.py checks 1e-6). Losses supply the logits/values gradient
(``ppo/analytic.py``, ``bc/step.py``).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from townlet.policy.nn.network import (
    CRITIC_PREFIX,
    FEATURE_KEYS,
    MAP_KEYS,
    POLICY_HEAD_KEYS,
    SHARED_KEYS,
    VALUE_HEAD_KEYS,
    Params,
)
from townlet.policy.nn.spec import NetworkSpec

_tanh_backward = torch.ops.aten.tanh_backward.default
_threshold_backward = torch.ops.aten.threshold_backward.default


@attrs.frozen(kw_only=True, eq=False)
class Trunk:
    """One trunk's layer inputs and outputs: ``features`` → ``feat``; ``flat`` maps → ``enc``
    (None without a map branch); their concatenation ``joined`` → ``hidden``."""

    features: torch.Tensor
    feat: torch.Tensor
    flat: torch.Tensor | None
    enc: torch.Tensor | None
    joined: torch.Tensor
    hidden: torch.Tensor


@attrs.frozen(kw_only=True, eq=False)
class Activations:
    """What :func:`backward` needs: the actor trunk, the critic trunk (the actor's own when
    the critic is shared; None when values were not asked for), the logits and the values."""

    actor: Trunk
    critic: Trunk | None
    logits: torch.Tensor
    values: torch.Tensor | None


def _act(spec: NetworkSpec, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) if spec.activation == "relu" else torch.tanh(x)


def _act_backward(spec: NetworkSpec, grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    # The aten kernels autograd itself runs: one dispatch each (g·(1 − y²) would be three).
    result: torch.Tensor
    if spec.activation == "relu":
        result = _threshold_backward(grad, out, 0)
    else:
        result = _tanh_backward(grad, out)
    return result


def _trunk(
    params: Params, p: str, maps: torch.Tensor | None, features: torch.Tensor, spec: NetworkSpec
) -> Trunk:
    w, b = FEATURE_KEYS
    feat = _act(spec, F.linear(features, params[p + w], params[p + b]))
    if not spec.has_map:
        hidden = _shared(params, p, feat, spec)
        return Trunk(features=features, feat=feat, flat=None, enc=None, joined=feat, hidden=hidden)
    if maps is None:
        raise ValueError(f"network has a map branch {spec.map_shape} but maps is None")
    flat = maps.flatten(1)
    w, b = MAP_KEYS
    enc = _act(spec, F.linear(flat, params[p + w], params[p + b]))
    joined = torch.cat((enc, feat), dim=-1)
    hidden = _shared(params, p, joined, spec)
    return Trunk(features=features, feat=feat, flat=flat, enc=enc, joined=joined, hidden=hidden)


def _shared(params: Params, p: str, joined: torch.Tensor, spec: NetworkSpec) -> torch.Tensor:
    w, b = SHARED_KEYS
    return _act(spec, F.linear(joined, params[p + w], params[p + b]))


def forward(
    params: Params,
    maps: torch.Tensor | None,
    features: torch.Tensor,
    *,
    spec: NetworkSpec,
    values: bool = True,
) -> Activations:
    """:func:`townlet.policy.nn.network.apply` keeping what :func:`backward` needs (no
    autograd graph is built). ``values=False`` skips the value head (and a separate critic's
    trunk) when the loss does not read them."""
    actor = _trunk(params, "", maps, features, spec)
    w, b = POLICY_HEAD_KEYS
    logits = F.linear(actor.hidden, params[w], params[b])
    if not values:
        return Activations(actor=actor, critic=None, logits=logits, values=None)
    critic = actor
    if spec.critic == "separate":
        critic = _trunk(params, CRITIC_PREFIX, maps, features, spec)
    w, b = VALUE_HEAD_KEYS
    value = F.linear(critic.hidden, params[w], params[b]).squeeze(-1)
    return Activations(actor=actor, critic=critic, logits=logits, values=value)


def _linear_grads(
    grads: dict[str, torch.Tensor], keys: tuple[str, str], grad: torch.Tensor, x: torch.Tensor
) -> None:
    # linear's backward: gᵀ·x for W (autograd takes (xᵀ·g)ᵀ, the same dot products in
    # another layout), Σ rows for b.
    weight, bias = keys
    grads[weight] = torch.mm(grad.t(), x)
    grads[bias] = grad.sum(0)


def _trunk_backward(
    params: Params,
    p: str,
    trunk: Trunk,
    grad_hidden: torch.Tensor,
    spec: NetworkSpec,
    grads: dict[str, torch.Tensor],
) -> None:
    g = _act_backward(spec, grad_hidden, trunk.hidden)
    _linear_grads(grads, (p + SHARED_KEYS[0], p + SHARED_KEYS[1]), g, trunk.joined)
    g_joined = torch.mm(g, params[p + SHARED_KEYS[0]])
    if trunk.enc is not None and trunk.flat is not None:
        h = trunk.enc.shape[1]
        g_enc = _act_backward(spec, g_joined[:, :h], trunk.enc)
        _linear_grads(grads, (p + MAP_KEYS[0], p + MAP_KEYS[1]), g_enc, trunk.flat)
        g_joined = g_joined[:, h:]
    g_feat = _act_backward(spec, g_joined, trunk.feat)
    _linear_grads(grads, (p + FEATURE_KEYS[0], p + FEATURE_KEYS[1]), g_feat, trunk.features)


def backward(
    params: Params,
    acts: Activations,
    grad_logits: torch.Tensor,
    grad_values: torch.Tensor | None,
    *,
    spec: NetworkSpec,
) -> dict[str, torch.Tensor]:
    """The gradients of a loss with respect to the parameters, given its gradients with
    respect to ``acts.logits`` (N, A) and ``acts.values`` (N,). With ``grad_values`` None the
    value head and a separate critic's trunk get no gradient (they are absent from the
    result), as parameters the loss does not read."""
    grads: dict[str, torch.Tensor] = {}
    _linear_grads(grads, POLICY_HEAD_KEYS, grad_logits, acts.actor.hidden)
    g_hidden = torch.mm(grad_logits, params[POLICY_HEAD_KEYS[0]])
    if grad_values is not None and acts.critic is not None:
        g_v = grad_values.unsqueeze(-1)
        _linear_grads(grads, VALUE_HEAD_KEYS, g_v, acts.critic.hidden)
        g_critic = torch.mm(g_v, params[VALUE_HEAD_KEYS[0]])
        if spec.critic == "separate":
            _trunk_backward(params, CRITIC_PREFIX, acts.critic, g_critic, spec, grads)
        else:
            g_hidden = g_hidden + g_critic
    _trunk_backward(params, "", acts.actor, g_hidden, spec, grads)
    # In the parameters' order, as value_and_grad returns them: the global norm sums in it.
    return {k: grads[k] for k in params if k in grads}
