"""The shape of a policy network, as a torch-free record."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import attrs
from attrs import validators as v

Activation = Literal["relu", "tanh"]
InitScheme = Literal["torch_default", "orthogonal"]
CriticKind = Literal["shared", "separate"]


def _to_map_shape(value: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(value)
    if len(shape) != 3 or any(
        isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape
    ):
        raise ValueError(f"map_shape must be three non-negative ints (C, H, W), got {value!r}")
    return (shape[0], shape[1], shape[2])


@attrs.frozen(kw_only=True)
class NetworkSpec:
    """What a Townlet policy/value network looks like (reference-ppo §4).

    ``map_shape`` is ``(C, H, W)``; when ``C·H·W == 0`` the network has no map branch (vector
    observations: features only). ``activation`` is applied after every hidden layer;
    ``init`` picks the weight initialisation: ``"torch_default"`` (``nn.Linear``'s own, as the
    reference) or ``"orthogonal"`` (gain √2 on hidden layers, 0.01 on the policy head, 1 on
    the value head, zero biases — as CleanRL / Stable-Baselines3). ``critic`` ``"shared"`` (the
    reference) puts both heads on one trunk; ``"separate"`` gives the value head its own trunk of
    the same shape (parameters ``critic.*``), as Stable-Baselines3's and CleanRL's MLP policies.
    """

    map_shape: tuple[int, int, int] = attrs.field(default=(0, 0, 0), converter=_to_map_shape)
    feature_dim: int = attrs.field(validator=[v.instance_of(int), v.ge(1)])
    action_dim: int = attrs.field(validator=[v.instance_of(int), v.ge(1)])
    hidden_dim: int = attrs.field(default=256, validator=[v.instance_of(int), v.ge(1)])
    activation: Activation = attrs.field(default="relu", validator=v.in_(("relu", "tanh")))
    init: InitScheme = attrs.field(
        default="torch_default", validator=v.in_(("torch_default", "orthogonal"))
    )
    critic: CriticKind = attrs.field(default="shared", validator=v.in_(("shared", "separate")))

    @property
    def map_size(self) -> int:
        """Number of map inputs, ``C·H·W`` (0 means no map branch)."""
        return math.prod(self.map_shape)

    @property
    def has_map(self) -> bool:
        """Whether the network has a map branch."""
        return self.map_size > 0

    def to_dict(self) -> dict[str, object]:
        """The spec as a JSON-ready dict (``map_shape`` as a list; ``critic`` only when it is
        not the reference's ``"shared"``, so older readers still load shared-trunk specs)."""
        data = {**attrs.asdict(self), "map_shape": list(self.map_shape)}
        if self.critic == "shared":
            del data["critic"]
        return data


def spec_from_dict(data: object) -> NetworkSpec:
    """Build a :class:`NetworkSpec` from :meth:`NetworkSpec.to_dict` output.

    Raises ``ValueError``/``TypeError`` when ``data`` is not such a dict (unknown keys included).
    """
    if not isinstance(data, dict):
        raise TypeError(f"network spec must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in attrs.fields(NetworkSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"network spec has unknown keys {unknown}")
    return NetworkSpec(**data)
