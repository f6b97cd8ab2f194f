"""Rollout capture, torch-free: run a policy in the town, a Gymnasium adapter or a PettingZoo
env, record decision-time frames, and turn them into Townlet replay samples
(``docs/capture.md``). The network policy is in :mod:`townlet.policy.rollout_torch`."""

from __future__ import annotations

from townlet.policy.rollout.buffer import (
    ROLLOUT_DATASET_LABEL,
    RolloutBuffer,
    build_rollout_dataset,
    episode_returns,
    rollout_summary,
)
from townlet.policy.rollout.capture import (
    POLICY_STREAM,
    CapturedFrames,
    buffer_from_frames,
    capture_frames,
    capture_rollout,
    make_stepper,
    resolve_policy,
)
from townlet.policy.rollout.frames import OBSERVATION_ALIGNMENT, FrameRecorder, recorded_samples
from townlet.policy.rollout.policies import (
    Policy,
    PolicyOutput,
    RandomPolicy,
    ScriptedPolicy,
    WorldPolicy,
    check_policy_output,
    policy_kind,
)
from townlet.policy.rollout.save import sample_stem, save_rollout
from townlet.policy.rollout.sources import Obs, SourceInfo, Transition, episode_seed
from townlet.policy.rollout.workspace import release_capture_buffers

__all__ = [
    "OBSERVATION_ALIGNMENT",
    "POLICY_STREAM",
    "ROLLOUT_DATASET_LABEL",
    "CapturedFrames",
    "FrameRecorder",
    "Obs",
    "Policy",
    "PolicyOutput",
    "RandomPolicy",
    "RolloutBuffer",
    "ScriptedPolicy",
    "SourceInfo",
    "Transition",
    "WorldPolicy",
    "buffer_from_frames",
    "build_rollout_dataset",
    "capture_frames",
    "capture_rollout",
    "check_policy_output",
    "episode_returns",
    "episode_seed",
    "make_stepper",
    "policy_kind",
    "recorded_samples",
    "release_capture_buffers",
    "resolve_policy",
    "rollout_summary",
    "sample_stem",
    "save_rollout",
]
