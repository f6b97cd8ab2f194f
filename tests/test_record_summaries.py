"""Records that hold tensors or arrays print a short repr (dtypes and shapes, never values)
and give a JSON-ready ``to_dict()``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _replay_helpers import make_sample
from townlet._summary import describe, jsonable
from townlet.policy.replay import InMemoryReplayDataset, ReplaySample, build_batch
from townlet.policy.rollout import RolloutBuffer


def _samples() -> list[ReplaySample]:
    return [make_sample(5, seed=i, metadata={"agent_id": f"a{i}"}) for i in range(3)]


def test_describe_and_jsonable_use_shapes_not_values() -> None:
    array = np.full((3, 4), 7.123456, np.float32)
    assert describe(array) == "float32[3, 4]"
    assert jsonable(array) == {"dtype": "float32", "shape": [3, 4]}
    params = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(2, np.float32)}
    assert describe(params) == "{2 tensors, 8 values}"
    assert jsonable(params)["values"] == 8
    assert describe(tuple(range(9))) == "(9 × int)"
    assert jsonable({"x": np.float32(0.5), "t": (1, 2)}) == {"x": 0.5, "t": [1, 2]}


def test_replay_sample_and_batch() -> None:
    sample = make_sample(5, metadata={"agent_id": "anna"})
    text = repr(sample)
    assert "features=float32[5, 4]" in text and "map=float32[5, 2, 3, 3]" in text
    assert str(float(sample.features[0, 0]))[:6] not in text
    out = sample.to_dict()
    assert out["actions"] == {"dtype": "int64", "shape": [5]}
    assert out["metadata"]["agent_id"] == "anna"
    json.dumps(out)
    batch = build_batch(_samples()[:2])
    assert "maps=float32[2, 5, 2, 3, 3]" in repr(batch)
    assert batch.to_dict()["features"]["shape"] == [2, 5, 4]


def test_rollout_buffer() -> None:
    buffer = RolloutBuffer(samples=_samples(), rollout_ticks=5, source="town", policy="random")
    text = repr(buffer)
    assert len(text) < 2000
    assert text.startswith("RolloutBuffer(samples=(ReplaySample(features=float32[5, 4]")
    out = json.loads(json.dumps(buffer.to_dict()))
    assert [s["metadata"]["agent_id"] for s in out["samples"]] == ["a0", "a1", "a2"]
    assert out["event_counts"] == buffer.event_counts.to_dict()
    assert out["rollout_ticks"] == 5 and out["source"] == "town"


def test_ppo_train_result() -> None:
    pytest.importorskip("torch")
    from townlet.policy.training.strategies.ppo import train_ppo

    run = train_ppo(InMemoryReplayDataset(_samples(), batch_size=3), epochs=1)
    text = repr(run)
    assert len(text) < 1500, len(text)
    assert "params={10 tensors, 138,500 values}" in text
    assert "exp_avg={10 tensors, 138,500 values}" in text
    out = json.loads(json.dumps(run.to_dict()))
    assert out["result"] == run.result.to_dict()
    assert out["state"]["params"]["tensors"]["policy_head.weight"]["shape"] == [3, 256]
    assert out["state"]["params"]["values"] == 138_500
    assert out["state"]["steps"] == 15


def test_bc_run() -> None:
    pytest.importorskip("torch")
    from townlet.config import BCConfig
    from townlet.policy.training.strategies.bc import train_bc

    run = train_bc(_samples(), cfg=BCConfig(epochs=1, val_fraction=0.0))
    text = repr(run)
    assert len(text) < 2000, len(text)
    assert "params={10 tensors" in text
    out = json.loads(json.dumps(run.to_dict()))
    assert out["result"] == run.result.to_dict()
    assert out["state"]["params"]["tensors"]["value_head.bias"] == {
        "dtype": "float32",
        "shape": [1],
    }
