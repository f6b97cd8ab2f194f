"""The torch-free rollout capture service over a root Config."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from townlet.config import Config, TrainingConfig
from townlet.errors import RolloutError
from townlet.policy.training.services.rollout import (
    RolloutCaptureService,
    build_dataset_from_buffer,
    capture_from_config,
    rollout_world_config,
)
from townlet.world import WorldConfig


def _config(**training: object) -> Config:
    return Config(
        seed=3,
        training=TrainingConfig(rollout_ticks=6, **training),  # type: ignore[arg-type]
        world=WorldConfig(num_agents=2),
    )


def test_defaults_come_from_config(tmp_path: Path) -> None:
    buffer = capture_from_config(_config(), output_dir=tmp_path / "c")
    assert buffer.rollout_ticks == 6 and buffer.seed == 3 and len(buffer.samples) == 2
    assert (tmp_path / "c" / "rollout_sample_manifest.json").is_file()
    dataset = build_dataset_from_buffer(buffer, batch_size=2)
    assert len(dataset) == 1 and dataset.rollout_ticks == 6


def test_stage_precedence() -> None:
    cfg = _config(social_reward_stage_override="C1")
    assert rollout_world_config(cfg).social_reward_stage == "C1"
    assert rollout_world_config(cfg, social_stage="C3").social_reward_stage == "C3"
    assert rollout_world_config(_config()).social_reward_stage == "OFF"
    assert rollout_world_config(_config(), num_agents=5).num_agents == 5
    with pytest.raises(RolloutError, match="social stage must be one of"):
        rollout_world_config(cfg, social_stage="C9")


def test_service_capture_and_errors() -> None:
    service = RolloutCaptureService(config=_config())
    buffer = service.capture(4, policy="random")
    assert buffer.rollout_ticks == 4 and buffer.policy == "random"
    with pytest.raises(RolloutError, match="ticks must be positive"):
        RolloutCaptureService(
            config=attrs.evolve(_config(), training=TrainingConfig(rollout_ticks=0))
        ).capture()
