"""A capture or evaluation policy from what a user typed: a name or a checkpoint path.

The rollout package takes policy objects; turning a path into a network policy needs the network
code above it, so callers (the CLI, services) resolve paths here first. Torch-free until a
checkpoint is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from townlet.errors import RolloutError

POLICY_NAMES = ("scripted", "random")


def resolve_policy_argument(policy: object, *, device: str = "cpu") -> object:
    """``"scripted"``/``"random"`` and policy objects pass through; any other string or path
    is a checkpoint file loaded as a network policy (needs torch). Raises
    :class:`~townlet.errors.RolloutError` for a path that is no file,
    :class:`~townlet.errors.CheckpointError` for an unreadable one and
    :class:`~townlet.errors.TorchNotAvailableError` without torch."""
    if isinstance(policy, str) and policy in POLICY_NAMES:
        return policy
    if not isinstance(policy, str | os.PathLike):
        return policy
    path = Path(policy)
    if not path.is_file():
        raise RolloutError(
            f"policy must be 'scripted', 'random' or a checkpoint file; {str(path)!r} "
            "is none of these"
        )
    from townlet.policy.rollout_torch import load_network_policy

    return load_network_policy(path, device=device)
