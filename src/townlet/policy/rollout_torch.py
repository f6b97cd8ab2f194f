"""The network policy for rollout capture: network parameters as a
:class:`~townlet.policy.rollout.policies.Policy` (needs torch).

Each ``act`` runs the network on the observations the agents act on, samples one action per
agent from the softmax of the logits with a ``torch.Generator`` seeded from the capture's policy
generator (itself seeded from the run seed, so a capture is reproducible), and returns the
chosen actions with their log-probabilities and the value estimates of those same observations
— the decision-time quantities PPO needs (DESIGN.md §5.3).
"""

from __future__ import annotations

import os

import attrs
import numpy as np
from attrs import validators as v
from numpy.typing import NDArray

from townlet._summary import record_dict, short_repr
from townlet.errors import RolloutError, TorchNotAvailableError

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised in the torch-free subprocess test
    raise TorchNotAvailableError("the network policy (townlet.policy.rollout_torch)") from exc

from townlet.policy.nn.checkpoint import load_checkpoint
from townlet.policy.nn.network import Params, apply
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.rollout.policies import PolicyOutput
from townlet.policy.rollout.sources import SourceInfo

_SEED_BOUND = 2**63 - 1


@attrs.frozen(kw_only=True, eq=False)
class NetworkPolicy:
    """Network parameters ``params`` of shape ``spec`` acting on ``device``.

    ``greedy`` picks the most likely action instead of sampling (the recorded log-prob is still
    that action's under the softmax). The record holds no mutable state: the sampling generator
    is derived on every call from the numpy generator capture passes in.
    """

    __repr__ = short_repr
    to_dict = record_dict

    params: Params
    spec: NetworkSpec = attrs.field(validator=v.instance_of(NetworkSpec))
    device: str = "cpu"
    greedy: bool = False
    kind: str = "network"

    def check_source(self, info: SourceInfo) -> None:
        """Raise :class:`RolloutError` unless the network's inputs and outputs fit ``info``."""
        problems = []
        if self.spec.feature_dim != len(info.feature_names):
            problems.append(
                f"feature_dim {self.spec.feature_dim} != {len(info.feature_names)} features"
            )
        if self.spec.action_dim != info.action_dim:
            problems.append(f"action_dim {self.spec.action_dim} != {info.action_dim} actions")
        if self.spec.has_map and self.spec.map_shape != info.map_shape:
            problems.append(f"map_shape {self.spec.map_shape} != {info.map_shape}")
        if problems:
            raise RolloutError(
                f"network policy does not fit source {info.name}: " + "; ".join(problems)
            )

    def act(
        self,
        maps: NDArray[np.float32] | None,
        features: NDArray[np.float32],
        rng: np.random.Generator,
    ) -> PolicyOutput:
        """Sample actions for the N observations; ``(actions, log_probs, values)``."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(rng.integers(0, _SEED_BOUND)))
        with torch.no_grad():
            feats = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            grid = None
            if self.spec.has_map and maps is not None:
                grid = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
                grid = grid.to(self.device)
            logits, values = apply(self.params, grid, feats.to(self.device), spec=self.spec)
            log_probs = torch.log_softmax(logits, dim=-1)
            if self.greedy:
                actions = torch.argmax(log_probs, dim=-1)
            else:
                actions = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
            chosen = log_probs.gather(1, actions[:, None]).squeeze(1)
        return (
            actions.cpu().numpy().astype(np.int64),
            chosen.cpu().numpy().astype(np.float32),
            values.cpu().numpy().astype(np.float32),
        )


def make_network_policy(
    params: Params, spec: NetworkSpec, *, device: str = "cpu", greedy: bool = False
) -> NetworkPolicy:
    """A :class:`NetworkPolicy` over ``params`` (moved to ``device``)."""
    moved = {name: tensor.to(device) for name, tensor in params.items()}
    return NetworkPolicy(params=moved, spec=spec, device=device, greedy=greedy)


def load_network_policy(
    path: str | os.PathLike[str], *, device: str = "cpu", greedy: bool = False
) -> NetworkPolicy:
    """A :class:`NetworkPolicy` from a checkpoint file (``townlet.policy.nn.save_checkpoint``).
    Raises :class:`~townlet.errors.CheckpointError` for a missing or unreadable file."""
    checkpoint = load_checkpoint(path, map_location=device)
    return NetworkPolicy(
        params=checkpoint.params, spec=checkpoint.spec, device=device, greedy=greedy
    )
