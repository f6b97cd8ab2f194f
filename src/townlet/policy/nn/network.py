"""The Townlet policy/value network as a parameter mapping and two pure functions.

Parameter names follow the reference ``ConflictAwarePolicyNetwork``'s ``state_dict`` keys, so a
mapping made here loads into that module with ``load_state_dict`` and vice versa.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from townlet.policy.nn.spec import NetworkSpec

Params = Mapping[str, torch.Tensor]
"""Network parameters by name. Treated as immutable: nothing in townlet writes into a ``Params``
or its tensors; every update builds a new mapping of new tensors. Stored tensors do not require
grad (gradients are taken on fresh leaves, see :func:`townlet.policy.nn.grads.value_and_grad`)."""

MAP_KEYS = ("map_encoder.1.weight", "map_encoder.1.bias")
FEATURE_KEYS = ("feature_encoder.0.weight", "feature_encoder.0.bias")
SHARED_KEYS = ("shared.0.weight", "shared.0.bias")
POLICY_HEAD_KEYS = ("policy_head.weight", "policy_head.bias")
VALUE_HEAD_KEYS = ("value_head.weight", "value_head.bias")

CRITIC_PREFIX = "critic."
_ORTHOGONAL_GAIN = math.sqrt(2.0)
_POLICY_GAIN = 0.01
_VALUE_GAIN = 1.0


def _trunk_layers(spec: NetworkSpec, prefix: str) -> list[tuple[tuple[str, str], int, int, float]]:
    h = spec.hidden_dim
    layers = []
    if spec.has_map:
        layers.append((MAP_KEYS, spec.map_size, h, _ORTHOGONAL_GAIN))
    layers.append((FEATURE_KEYS, spec.feature_dim, h, _ORTHOGONAL_GAIN))
    layers.append((SHARED_KEYS, 2 * h if spec.has_map else h, h, _ORTHOGONAL_GAIN))
    return [((prefix + w, prefix + b), i, o, g) for (w, b), i, o, g in layers]


def _layers(spec: NetworkSpec) -> list[tuple[tuple[str, str], int, int, float]]:
    """(weight/bias names, fan_in, fan_out, orthogonal gain) in the reference's creation order;
    a separate critic's trunk comes last, so the shared layers draw the same numbers."""
    h = spec.hidden_dim
    layers = _trunk_layers(spec, "")
    layers.append((POLICY_HEAD_KEYS, h, spec.action_dim, _POLICY_GAIN))
    layers.append((VALUE_HEAD_KEYS, h, 1, _VALUE_GAIN))
    if spec.critic == "separate":
        layers += _trunk_layers(spec, CRITIC_PREFIX)
    return layers


def value_keys(spec: NetworkSpec) -> tuple[str, ...]:
    """The parameters only the value estimate depends on: the value head, and the critic's
    trunk when ``spec.critic == "separate"``."""
    if spec.critic == "shared":
        return VALUE_HEAD_KEYS
    return VALUE_HEAD_KEYS + tuple(
        k for names, *_ in _trunk_layers(spec, CRITIC_PREFIX) for k in names
    )


def param_shapes(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    """The name → shape table of the parameters :func:`init_params` makes for ``spec``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for (w_name, b_name), fan_in, fan_out, _gain in _layers(spec):
        shapes[w_name] = (fan_out, fan_in)
        shapes[b_name] = (fan_out,)
    return shapes


def init_params(spec: NetworkSpec, seed: int, *, device: str | torch.device = "cpu") -> Params:
    """Fresh float32 parameters for ``spec``, drawn from a generator seeded by ``seed``.

    ``init="torch_default"`` reproduces ``nn.Linear.reset_parameters`` (weights
    U(±1/√fan_in), the Kaiming-uniform a=√5 bound; biases U(±1/√fan_in)) in the reference's layer
    order, so ``torch.manual_seed(s)`` + the reference module gives the same numbers as
    ``init_params(spec, s)``. ``init="orthogonal"`` gives orthogonal weights with gains √2
    (hidden), 0.01 (policy head), 1 (value head) and zero biases. Global RNG is never touched.
    Parameters are drawn on the CPU and then moved to ``device``.
    """
    generator = torch.Generator().manual_seed(seed)
    params: dict[str, torch.Tensor] = {}
    for (w_name, b_name), fan_in, fan_out, gain in _layers(spec):
        weight = torch.empty(fan_out, fan_in)
        bias = torch.empty(fan_out)
        if spec.init == "orthogonal":
            torch.nn.init.orthogonal_(weight, gain=gain, generator=generator)
            bias.zero_()
        else:
            # The same float arithmetic as kaiming_uniform_(a=√5) and Linear.reset_parameters,
            # so the draws are bit-identical to the reference module's.
            w_bound = math.sqrt(3.0) * (math.sqrt(2.0 / (1 + 5)) / math.sqrt(fan_in))
            weight.uniform_(-w_bound, w_bound, generator=generator)
            b_bound = 1.0 / math.sqrt(fan_in)
            bias.uniform_(-b_bound, b_bound, generator=generator)
        params[w_name] = weight.to(device)
        params[b_name] = bias.to(device)
    return params


def _activate(spec: NetworkSpec, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) if spec.activation == "relu" else torch.tanh(x)


def apply(
    params: Params,
    maps: torch.Tensor | None,
    features: torch.Tensor,
    *,
    spec: NetworkSpec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the network: ``(logits (N, A), values (N,))`` for a batch of N observations.

    ``maps`` is ``(N, C, H, W)`` (or already flat ``(N, C·H·W)``) and is ignored (may be None)
    when ``spec`` has no map branch; ``features`` is ``(N, D)``. Differentiable in ``params``.

    Raises ``ValueError`` when the network has a map branch and ``maps`` is None.
    """
    hidden = _trunk(params, "", maps, features, spec)
    logits = F.linear(hidden, params["policy_head.weight"], params["policy_head.bias"])
    if spec.critic == "separate":
        hidden = _trunk(params, CRITIC_PREFIX, maps, features, spec)
    values = F.linear(hidden, params["value_head.weight"], params["value_head.bias"]).squeeze(-1)
    return logits, values


def _trunk(
    params: Params,
    prefix: str,
    maps: torch.Tensor | None,
    features: torch.Tensor,
    spec: NetworkSpec,
) -> torch.Tensor:
    p = prefix
    feat = F.linear(features, params[p + FEATURE_KEYS[0]], params[p + FEATURE_KEYS[1]])
    feat = _activate(spec, feat)
    if spec.has_map:
        if maps is None:
            raise ValueError(f"network has a map branch {spec.map_shape} but maps is None")
        flat = maps.flatten(1)  # flatten, not reshape(n, -1): a rank's shard may be empty
        enc = F.linear(flat, params[p + MAP_KEYS[0]], params[p + MAP_KEYS[1]])
        feat = torch.cat((_activate(spec, enc), feat), dim=-1)
    return _activate(spec, F.linear(feat, params[p + SHARED_KEYS[0]], params[p + SHARED_KEYS[1]]))
