"""The policy network as data: parameters, a pure Adam, gradients, checkpoints.

Modules:

* :mod:`~townlet.policy.nn.spec` — :class:`NetworkSpec`, the shape of a network (torch-free).
* :mod:`~townlet.policy.nn.network` — ``init_params`` / ``apply`` over a parameter mapping.
* :mod:`~townlet.policy.nn.adam` — ``make_adam(cfg) -> (init, update)`` (and ``adam_init`` /
  ``adam_update``), torch's fused Adam with optional buffer donation.
* :mod:`~townlet.policy.nn.grads` — ``value_and_grad``, ``clip_by_global_norm``,
  ``apply_gradients``.
* :mod:`~townlet.policy.nn.analytic` — ``forward`` / ``backward``: the network's gradient written
  out (no autograd graph), what the eager PPO and BC updates use.
* :mod:`~townlet.policy.nn.checkpoint` — ``save_checkpoint`` / ``load_checkpoint``.
* :mod:`~townlet.policy.nn.rng` — ``derive_generator``: seeded generators from (seed, counters).

Names are re-exported lazily so that ``from townlet.policy.nn.spec import NetworkSpec`` works
without torch; every other name needs torch and raises
:class:`~townlet.errors.TorchNotAvailableError` when it is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

from townlet.errors import TorchNotAvailableError

_EXPORTS: dict[str, str] = {
    "NetworkSpec": "townlet.policy.nn.spec",
    "Activation": "townlet.policy.nn.spec",
    "InitScheme": "townlet.policy.nn.spec",
    "Params": "townlet.policy.nn.network",
    "init_params": "townlet.policy.nn.network",
    "apply": "townlet.policy.nn.network",
    "param_shapes": "townlet.policy.nn.network",
    "VALUE_HEAD_KEYS": "townlet.policy.nn.network",
    "POLICY_HEAD_KEYS": "townlet.policy.nn.network",
    "AdamConfig": "townlet.policy.nn.adam",
    "AdamState": "townlet.policy.nn.adam",
    "adam_init": "townlet.policy.nn.adam",
    "adam_update": "townlet.policy.nn.adam",
    "make_adam": "townlet.policy.nn.adam",
    "Adam": "townlet.policy.nn.adam",
    "Grads": "townlet.policy.nn.grads",
    "value_and_grad": "townlet.policy.nn.grads",
    "global_norm": "townlet.policy.nn.grads",
    "clip_by_global_norm": "townlet.policy.nn.grads",
    "apply_gradients": "townlet.policy.nn.grads",
    "update_with_gradients": "townlet.policy.nn.grads",
    "Checkpoint": "townlet.policy.nn.checkpoint",
    "CHECKPOINT_FORMAT_VERSION": "townlet.policy.nn.checkpoint",
    "save_checkpoint": "townlet.policy.nn.checkpoint",
    "load_checkpoint": "townlet.policy.nn.checkpoint",
    "derive_generator": "townlet.policy.nn.rng",
    "derive_seed": "townlet.policy.nn.rng",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'townlet.policy.nn' has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # A blocked or absent torch; any other missing module is a real error.
        if exc.name is not None and exc.name.split(".")[0] != "torch":
            raise
        raise TorchNotAvailableError(f"townlet.policy.nn.{name}") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
