"""Where a PPO run starts: the network spec the data needs and the initial state (fresh, from
parameters, from a BC/PPO checkpoint, or a state to continue). Whole-state checkpoints are in
:mod:`~townlet.policy.training.strategies.ppo.checkpoint`.

``infer_spec`` is reference-ppo §2.4 (map shape and feature count from the first batch, the
action count from every batch); a checkpoint's spec wins over the inferred one when
fine-tuning, and a dataset that does not fit it is refused before training starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import attrs
import torch

from townlet.errors import CheckpointError, ConfigError, ReplayDataError
from townlet.policy.nn.adam import adam_init
from townlet.policy.nn.checkpoint import Checkpoint, load_checkpoint
from townlet.policy.nn.network import Params, init_params, param_shapes
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay.batch import ReplayBatch
from townlet.policy.training.strategies.ppo.step import PPOState

Init = Mapping[str, torch.Tensor] | Checkpoint | str | os.PathLike[str]


@attrs.frozen(kw_only=True)
class DataShape:
    """What the batches hold: ``map_shape`` (C, H, W), ``feature_dim``, the ``action_dim`` they
    declare (sidecar ``action_dim``, else max action + 1) and the largest action id seen."""

    map_shape: tuple[int, int, int]
    feature_dim: int
    action_dim: int
    max_action: int


def data_shape(batches: Sequence[ReplayBatch]) -> DataShape:
    """Reference-ppo §2.4 over ``batches`` (non-empty). Raises ``ReplayDataError`` when the
    derived action dimension is not positive."""
    first = batches[0]
    c, h, w = (int(d) for d in first.maps.shape[2:])
    max_action = max(int(b.actions.max()) if b.actions.size else -1 for b in batches)
    declared = max(int(b.metadata.get("action_dim", 0) or 0) for b in batches)
    action_dim = max(declared, max_action + 1)
    if action_dim <= 0:
        raise ReplayDataError("Derived action_dim must be positive")
    return DataShape(
        map_shape=(c, h, w),
        feature_dim=int(first.features.shape[2]),
        action_dim=action_dim,
        max_action=max_action,
    )


def spec_for(shape: DataShape, spec: NetworkSpec | None = None) -> NetworkSpec:
    """``spec`` when given, else the reference network (hidden 256) sized for ``shape``."""
    if spec is not None:
        return spec
    return NetworkSpec(
        map_shape=shape.map_shape, feature_dim=shape.feature_dim, action_dim=shape.action_dim
    )


def check_fit(spec: NetworkSpec, shape: DataShape, *, label: str, source: str) -> None:
    """Refuse data the network cannot read: another map shape or feature count, or an action id
    ``>= spec.action_dim``. Raises ``CheckpointError`` when ``source`` names a checkpoint,
    ``ConfigError`` otherwise; the message names the dataset, the source and both shapes."""
    problems = []
    data_map = shape.map_shape if any(shape.map_shape) else (0, 0, 0)
    spec_map = spec.map_shape if spec.has_map else (0, 0, 0)
    if data_map != spec_map:
        problems.append(f"map_shape {data_map} != {spec_map}")
    if shape.feature_dim != spec.feature_dim:
        problems.append(f"feature_dim {shape.feature_dim} != {spec.feature_dim}")
    if shape.max_action >= spec.action_dim:
        problems.append(f"action id {shape.max_action} >= action_dim {spec.action_dim}")
    if problems:
        error = CheckpointError if "checkpoint" in source else ConfigError
        raise error(f"dataset {label} does not fit the network of {source}: " + "; ".join(problems))


def _params_on(params: Mapping[str, torch.Tensor], device: str | torch.device) -> Params:
    return {k: v.detach().to(device) for k, v in params.items()}


def resolve_init(init: Init | None, *, device: str | torch.device = "cpu") -> Init | None:
    """``init`` with a checkpoint path read into a :class:`Checkpoint` (the one file read of a
    run's start; the pure steps take parameters or checkpoints). Raises ``CheckpointError``."""
    if isinstance(init, str | os.PathLike):
        return load_checkpoint(init, map_location=device)
    return init


def initial_params(
    shape: DataShape,
    *,
    label: str,
    seed: int,
    init: Init | None = None,
    spec: NetworkSpec | None = None,
    device: str | torch.device = "cpu",
) -> tuple[NetworkSpec, Params]:
    """The network a run on data of ``shape`` starts from: parameters from ``init`` (a
    parameter mapping, a :class:`Checkpoint`, or a checkpoint path — its spec wins; ``spec``
    must then agree with it) or ``init_params(spec, seed)`` with ``spec`` inferred when None.

    Raises ``CheckpointError`` for an unreadable checkpoint, parameters that do not match the
    spec, or data that does not fit a checkpoint's network; ``ConfigError`` for data that does
    not fit an explicit ``spec``.
    """
    if isinstance(init, str | os.PathLike):
        init = load_checkpoint(init, map_location=device)
    if isinstance(init, Checkpoint):
        if spec is not None and spec != init.spec:
            raise CheckpointError(
                f"checkpoint network spec {init.spec!r} does not match the requested {spec!r}"
            )
        check_fit(init.spec, shape, label=label, source="the checkpoint")
        return init.spec, _params_on(init.params, device)
    net = spec_for(shape, spec)
    check_fit(net, shape, label=label, source="the given spec" if spec else "the data")
    if init is None:
        return net, init_params(net, seed, device=device)
    params = _params_on(init, device)
    got = {k: tuple(v.shape) for k, v in params.items()}
    if got != param_shapes(net):
        raise CheckpointError(
            f"init parameters do not match network spec {net!r}: expected "
            f"{param_shapes(net)}, got {got}"
        )
    return net, params


def initial_state(
    shape: DataShape,
    *,
    label: str,
    seed: int,
    init: Init | None = None,
    spec: NetworkSpec | None = None,
    device: str | torch.device = "cpu",
) -> PPOState:
    """A fresh :class:`PPOState` from :func:`initial_params`: zero Adam moments, counters at
    zero, ``cycle_id`` −1."""
    net, params = initial_params(shape, label=label, seed=seed, init=init, spec=spec, device=device)
    return PPOState(spec=net, params=params, adam_state=adam_init(params), seed=seed)


def check_state(state: PPOState, shape: DataShape, *, label: str) -> None:
    """Refuse to continue ``state`` on data its network cannot read (``ConfigError``)."""
    check_fit(state.spec, shape, label=label, source="the state to continue")


def start_state(
    shape: DataShape,
    *,
    label: str,
    seed: int,
    state: PPOState | None = None,
    init: Init | None = None,
    spec: NetworkSpec | None = None,
    device: str | torch.device = "cpu",
) -> PPOState:
    """The state a PPO run on data of ``shape`` starts from: ``state`` (continue a run; checked
    against the data), else :func:`initial_state` from ``init``/``spec``. Raises
    ``ConfigError`` when both ``state`` and ``init``/another ``spec`` are given."""
    if state is None:
        return initial_state(shape, label=label, seed=seed, init=init, spec=spec, device=device)
    if init is not None or (spec is not None and spec != state.spec):
        raise ConfigError("pass either state= (continue a run) or init=/spec=, not both")
    check_state(state, shape, label=label)
    return state
