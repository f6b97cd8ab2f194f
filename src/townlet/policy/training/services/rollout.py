"""Rollout capture as a training service (torch-free): capture the configured town, optionally
save the capture directory, and hand the buffer to training as an in-memory dataset.

The reference's ``RolloutCaptureService.capture(ticks, …)`` ran its simulation loop; here the
town comes from ``config.world`` and the capture from
:func:`townlet.policy.rollout.capture_rollout`.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from townlet.config import Config
from townlet.errors import RolloutError
from townlet.policy.policy_argument import resolve_policy_argument
from townlet.policy.replay import InMemoryReplayDataset
from townlet.policy.rollout import (
    RolloutBuffer,
    build_rollout_dataset,
    capture_rollout,
    save_rollout,
)
from townlet.policy.rollout.capture import Progress
from townlet.world import WorldConfig
from townlet.world.config import WORLD_SOCIAL_STAGES


def rollout_world_config(
    config: Config, *, social_stage: str | None = None, num_agents: int | None = None
) -> WorldConfig:
    """``config.world`` with the social reward stage set to ``social_stage``, else
    ``config.training.social_reward_stage_override`` when set, and ``num_agents`` when given.
    Raises :class:`RolloutError` for an unknown stage or fewer than one agent."""
    stage = social_stage or config.training.social_reward_stage_override
    changes: dict[str, Any] = {}
    if stage is not None:
        if stage not in WORLD_SOCIAL_STAGES:
            raise RolloutError(f"social stage must be one of {WORLD_SOCIAL_STAGES}, got {stage!r}")
        changes["social_reward_stage"] = stage
    if num_agents is not None:
        if isinstance(num_agents, bool) or not isinstance(num_agents, int) or num_agents < 1:
            raise RolloutError(
                f"No agents available for rollout capture: agents must be >= 1, got {num_agents!r}"
            )
        changes["num_agents"] = num_agents
    return attrs.evolve(config.world, **changes) if changes else config.world


def capture_from_config(
    config: Config,
    *,
    policy: object = "scripted",
    ticks: int | None = None,
    seed: int | None = None,
    social_stage: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    prefix: str = "rollout_sample",
    compress: bool = True,
    progress: Progress | None = None,
) -> RolloutBuffer:
    """Capture the configured town: ``ticks`` (default ``config.training.rollout_ticks``) ticks
    of ``policy`` seeded ``seed`` (default ``config.seed``), in the stage chosen by
    :func:`rollout_world_config`; when ``output_dir`` is given, also save the capture directory.
    Raises :class:`RolloutError` as :func:`capture_rollout` does."""
    world = rollout_world_config(config, social_stage=social_stage)
    buffer = capture_rollout(
        world,
        resolve_policy_argument(policy),
        config.training.rollout_ticks if ticks is None else ticks,
        config.seed if seed is None else seed,
        progress=progress,
    )
    if output_dir is not None:
        save_rollout(buffer, output_dir, prefix=prefix, compress=compress)
    return buffer


def build_dataset_from_buffer(
    buffer: RolloutBuffer, batch_size: int = 1, drop_last: bool = False
) -> InMemoryReplayDataset:
    """The reference's helper: ``buffer.build_dataset(batch_size, drop_last)``."""
    return build_rollout_dataset(buffer, batch_size=batch_size, drop_last=drop_last)


@attrs.frozen(kw_only=True)
class RolloutCaptureService:
    """The capture service bound to a root :class:`~townlet.config.Config`."""

    config: Config = attrs.field(validator=attrs.validators.instance_of(Config))

    def capture(
        self,
        ticks: int | None = None,
        *,
        policy: object = "scripted",
        output_dir: str | os.PathLike[str] | None = None,
        prefix: str = "rollout_sample",
        compress: bool = True,
    ) -> RolloutBuffer:
        """:func:`capture_from_config` with this service's config."""
        return capture_from_config(
            self.config,
            policy=policy,
            ticks=ticks,
            output_dir=output_dir,
            prefix=prefix,
            compress=compress,
        )
