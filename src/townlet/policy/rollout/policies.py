"""Policies a rollout is captured with, vectorised over agents.

A policy is anything with ``act(maps, features, rng) -> (actions, log_probs, values)``: given
the observations of the N agents about to act — ``maps`` (N, C, H, W) float32 or ``None`` for a
features-only source, ``features`` (N, D) float32 — and a numpy generator, it returns the chosen
action ids (N,) int64, the log-probability of each chosen action under the policy (N,) float32
and the value estimate of each observation (N,) float32. Capture records them together with
the observation they were computed from (decision-time alignment, DESIGN.md §5.3).

A policy may also set ``kind`` (a short name written to the sidecar as ``policy``).

Policies that read the town's state instead of observations (the scripted expert) implement
:class:`WorldPolicy` — ``act_world(state, rng)`` — and can only be captured from the town.
The network policy lives in :mod:`townlet.policy.rollout_torch` (it needs torch).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import attrs
import numpy as np
from attrs import validators as v
from numpy.typing import NDArray

from townlet.errors import RolloutError
from townlet.world.scripted import scripted_actions
from townlet.world.state import WorldState

PolicyOutput = tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]
"""``(actions (N,) int64, log_probs (N,) float32, values (N,) float32)``."""


@runtime_checkable
class Policy(Protocol):
    """Chooses actions for N agents from their observations (see the module docstring)."""

    def act(
        self,
        maps: NDArray[np.float32] | None,
        features: NDArray[np.float32],
        rng: np.random.Generator,
    ) -> PolicyOutput:
        """``(actions, log_probs, values)`` for the N observations."""
        ...


@runtime_checkable
class WorldPolicy(Protocol):
    """A policy that reads the town's :class:`~townlet.world.WorldState` (all agents)."""

    def act_world(self, state: WorldState, rng: np.random.Generator) -> PolicyOutput:
        """``(actions, log_probs, values)`` for every agent of ``state``."""
        ...


@attrs.frozen(kw_only=True)
class ScriptedPolicy:
    """The town's scripted expert (:func:`townlet.world.scripted_actions`) as a policy.

    Convention: the expert is treated as deterministic, so each recorded log-probability is
    ``log_prob`` (default ``log 1 = 0``) and each value 0 — the same as the reference's
    scripted captures. Its only randomness (whether an idle agent chats) comes from ``rng``.
    It needs the world state: capture it from a ``WorldConfig`` or the town's PettingZoo env.
    """

    log_prob: float = attrs.field(default=0.0, converter=float, validator=v.le(0.0))
    kind: str = "scripted"

    def act_world(self, state: WorldState, rng: np.random.Generator) -> PolicyOutput:
        """Expert actions for every agent of ``state``; constant log-probs, zero values."""
        actions = scripted_actions(state, None, rng)
        n = actions.shape[0]
        return (
            actions,
            np.full(n, self.log_prob, dtype=np.float32),
            np.zeros(n, dtype=np.float32),
        )

    def act(
        self,
        maps: NDArray[np.float32] | None,
        features: NDArray[np.float32],
        rng: np.random.Generator,
    ) -> PolicyOutput:
        """Always raises :class:`RolloutError`: the expert reads the town's state, not
        observations."""
        raise RolloutError(
            "the scripted policy reads the town's state; capture it from a WorldConfig or the "
            "town's PettingZoo env (use --policy random or a checkpoint for other envs)"
        )


@attrs.frozen(kw_only=True)
class RandomPolicy:
    """Uniform over ``action_dim`` actions: log-prob ``log(1/A)``, value 0."""

    action_dim: int = attrs.field(validator=[v.instance_of(int), v.ge(1)])
    kind: str = "random"

    def act(
        self,
        maps: NDArray[np.float32] | None,
        features: NDArray[np.float32],
        rng: np.random.Generator,
    ) -> PolicyOutput:
        """Uniform action ids for the ``len(features)`` agents."""
        n = features.shape[0]
        actions = np.asarray(rng.integers(0, self.action_dim, size=n), dtype=np.int64)
        return (
            actions,
            np.full(n, -math.log(self.action_dim), dtype=np.float32),
            np.zeros(n, dtype=np.float32),
        )


def policy_kind(policy: object) -> str:
    """The name recorded in the sidecar: the policy's ``kind``, else its class name."""
    kind = getattr(policy, "kind", None)
    return kind if isinstance(kind, str) else type(policy).__name__


def check_policy_output(output: object, count: int, action_dim: int) -> PolicyOutput:
    """Validate what a policy returned for ``count`` agents and convert it to the canonical
    dtypes. Raises :class:`RolloutError` naming the bad part."""
    if not isinstance(output, tuple) or len(output) != 3:
        raise RolloutError(
            "a policy's act() must return (actions, log_probs, values), got "
            f"{type(output).__name__}"
        )
    actions = np.asarray(output[0])
    if actions.shape != (count,) or actions.dtype.kind not in "iu":
        raise RolloutError(
            f"policy actions must be ({count},) integers, got shape {actions.shape} "
            f"dtype {actions.dtype}"
        )
    if count and (int(actions.min()) < 0 or int(actions.max()) >= action_dim):
        raise RolloutError(
            f"policy actions must lie in [0, {action_dim}), got "
            f"[{int(actions.min())}, {int(actions.max())}]"
        )
    rest = []
    for name, raw in (("log_probs", output[1]), ("values", output[2])):
        array = np.asarray(raw, dtype=np.float32)
        if array.shape != (count,):
            raise RolloutError(f"policy {name} must have shape ({count},), got {array.shape}")
        rest.append(array)
    return actions.astype(np.int64, copy=False), rest[0], rest[1]
