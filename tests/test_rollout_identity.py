"""Pinned content hashes of small captures: any change to how capture records, lays out or
converts frames must leave every array (bytes, dtype, shape), every sidecar and the event
counters exactly as they were. The hashes were taken before the capture was rewritten for
speed (agent-major preallocated buffers); a legitimate change of the world's dynamics or of
the sample format updates them deliberately."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from townlet.policy.replay import NPZ_KEYS, load_replay_sample
from townlet.policy.rollout import RolloutBuffer, capture_rollout
from townlet.world import WorldConfig, scaled_world_config


def _digest(buffer: RolloutBuffer) -> str:
    h = hashlib.sha256()
    for sample in buffer.samples:
        for key in NPZ_KEYS:
            array = getattr(sample, key)
            h.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        h.update(json.dumps(dict(sample.metadata), sort_keys=True, default=str).encode())
    h.update(json.dumps(buffer.event_counts.to_dict(), sort_keys=True).encode())
    h.update(json.dumps(buffer.summary(), sort_keys=True).encode())
    return h.hexdigest()


def _town(policy: str, **overrides: Any) -> RolloutBuffer:
    return capture_rollout(WorldConfig(num_agents=6, **overrides), policy, 45, seed=7)


PINNED = {
    "town_scripted": "0a2ef884a8f26812d5d0ddcb8cce25f8aca90941d789cbbc3f58a07d82384ecb",
    "town_random_faint": "41e8fdfef443112325581a1aaa3fa150f84fc9af69b6828d1021e09ceb0b8ce3",
    "town_160_agents": "9cc7343ebad24af1fe67f1560ba3a83e4c0eaaa9d238f0eeeb46df5c2750b382",
    "pettingzoo_absent": "0e31ba19324cbd464e3eed46b3003257ff84066748e47872978fb716d65da6e9",
    "cartpole": "260f3117aaabaff7883daf81ba9da53702de245a0d9aabde08b4e5e758a7014d",
}


def test_town_scripted_capture_is_pinned() -> None:
    assert _digest(_town("scripted")) == PINNED["town_scripted"]


def test_town_random_capture_with_faints_and_truncation_is_pinned() -> None:
    buffer = _town("random", hunger_decay=0.05, episode_length=20)
    assert any(s.dones.any() for s in buffer.samples)
    assert _digest(buffer) == PINNED["town_random_faint"]


def test_many_agents_capture_is_pinned() -> None:
    # 160 agents x 80 ticks spans more than one block of agents when samples are built.
    buffer = capture_rollout(scaled_world_config(160), "scripted", 80, seed=3)
    assert _digest(buffer) == PINNED["town_160_agents"]


def test_pettingzoo_capture_with_absent_agents_is_pinned() -> None:
    pytest.importorskip("pettingzoo")
    from townlet.envs.pettingzoo_town import make_town_env

    env = make_town_env(WorldConfig(num_agents=4, hunger_decay=0.05))
    buffer = capture_rollout(env, "random", 50, seed=1)
    assert min(s.timesteps for s in buffer.samples) < 50
    assert _digest(buffer) == PINNED["pettingzoo_absent"]


def test_cartpole_capture_is_pinned() -> None:
    pytest.importorskip("gymnasium")
    from townlet.envs.gymnasium_adapter import make_gymnasium_source

    buffer = capture_rollout(make_gymnasium_source("CartPole-v1", 3), "random", 40, seed=2)
    assert _digest(buffer) == PINNED["cartpole"]


def test_saved_capture_reads_back_identical(tmp_path: Path) -> None:
    buffer = _town("scripted")
    out = buffer.save(tmp_path / "cap")
    for number, sample in enumerate(buffer.samples, start=1):
        loaded = load_replay_sample(out / f"rollout_sample_agent_{number - 1}_{number:03d}.npz")
        for key in NPZ_KEYS:
            a, b = getattr(sample, key), getattr(loaded, key)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()
