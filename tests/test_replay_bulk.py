"""samples_from_block: equal to the per-sample constructor field for field, same errors."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest

from townlet.errors import ReplayDataError
from townlet.policy.replay import NPZ_KEYS, ReplaySample, samples_from_block
from townlet.policy.rollout import capture_frames, capture_rollout
from townlet.policy.rollout.frames import recorded_samples
from townlet.world import WorldConfig


def _block(
    rng: np.random.Generator,
    n: int,
    t: int,
    *,
    with_map: bool = True,
    bootstrap: bool = True,
    dtype: Any = np.float32,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    d = int(rng.integers(1, 6))
    arrays: dict[str, Any] = {
        "features": rng.normal(size=(n, t, d)).astype(dtype),
        "actions": rng.integers(0, 5, size=(n, t)),
        "old_log_probs": -rng.random((n, t)).astype(dtype),
        "value_preds": rng.normal(size=(n, t + bootstrap)).astype(dtype),
        "rewards": rng.normal(size=(n, t)).astype(dtype),
        "dones": rng.random((n, t)) < 0.2,
    }
    if with_map:
        arrays["map"] = (rng.random((n, t, 2, 3, 3)) < 0.5).astype(dtype)
    metadata = [
        {
            "feature_names": [f"f{j}" for j in range(d)],
            "agent_id": f"agent_{i}",
            "action_dim": 5,
            "timesteps": t,
            "metrics": {"x": float(i)},
        }
        for i in range(n)
    ]
    if rng.random() < 0.5:  # sidecars without the derived keys get them filled in
        for meta in metadata:
            del meta["timesteps"]
    return arrays, metadata


def _one_by_one(arrays: dict[str, Any], metadata: list[dict[str, Any]]) -> list[ReplaySample]:
    return [
        ReplaySample(**{k: v[i] for k, v in arrays.items()}, metadata=meta)
        for i, meta in enumerate(metadata)
    ]


def _assert_same(bulk: ReplaySample, ref: ReplaySample) -> None:
    assert type(bulk) is ReplaySample
    for key in NPZ_KEYS:
        got, want = getattr(bulk, key), getattr(ref, key)
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        assert not got.flags.writeable, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert isinstance(bulk.metadata, types.MappingProxyType)
    assert list(bulk.metadata.items()) == list(ref.metadata.items())  # key order too
    assert bulk.timesteps == ref.timesteps and bulk.action_dim == ref.action_dim


@pytest.mark.parametrize("seed", range(12))
def test_bulk_equals_constructor_on_random_blocks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, t = int(rng.integers(1, 7)), int(rng.integers(1, 9))
    arrays, metadata = _block(
        rng,
        n,
        t,
        with_map=seed % 3 != 0,  # every third block is features-only (no map key at all)
        bootstrap=seed % 4 != 1,
        dtype=np.float64 if seed % 5 == 2 else np.float32,
    )
    if seed % 2:
        arrays["dones"] = arrays["dones"].astype(np.int64)  # integers 0/1 accepted
    bulk = samples_from_block(arrays, metadata)
    ref = _one_by_one(arrays, metadata)
    assert len(bulk) == n
    for got, want in zip(bulk, ref, strict=True):
        _assert_same(got, want)


def test_features_only_map_none_matches_default_empty_map() -> None:
    arrays, metadata = _block(np.random.default_rng(1), 3, 4, with_map=False)
    bulk = samples_from_block({**arrays, "map": None}, metadata)
    assert bulk[0].map.shape == (4, 0, 0, 0) and bulk[0].map.dtype == np.float32
    assert not bulk[0].has_map
    for got, want in zip(bulk, _one_by_one(arrays, metadata), strict=True):
        _assert_same(got, want)


def test_float32_samples_are_read_only_views_of_the_block() -> None:
    arrays, metadata = _block(np.random.default_rng(2), 3, 5)
    samples = samples_from_block(arrays, metadata)
    assert np.shares_memory(samples[1].map, arrays["map"][1])
    assert np.shares_memory(samples[2].value_preds, arrays["value_preds"][2])
    assert arrays["features"].flags.writeable  # the caller's arrays keep their flags
    with pytest.raises(ValueError, match="read-only"):
        samples[0].features[0, 0] = 1.0


def _errors(arrays: dict[str, Any], metadata: list[dict[str, Any]], row: int) -> tuple[str, str]:
    with pytest.raises(ReplayDataError) as bulk:
        samples_from_block(arrays, metadata)
    with pytest.raises(ReplayDataError) as ref:
        _one_by_one(arrays, metadata)[row]
    return str(bulk.value), str(ref.value)


def test_nan_in_one_agents_features_names_field_and_agent() -> None:
    arrays, metadata = _block(np.random.default_rng(3), 5, 6)
    arrays["features"][3, 4, 0] = np.nan
    arrays["features"][3, 1, 0] = np.inf
    got, want = _errors(arrays, metadata, 3)
    assert want == "ReplaySample.features contains 2 NaN/Inf value(s)"
    assert got == f"{want} (row 3, agent_id 'agent_3' of the block)"


def test_nan_in_map_of_last_row_without_agent_id() -> None:
    arrays, metadata = _block(np.random.default_rng(4), 4, 3)
    arrays["map"][3, 2, 1, 2, 2] = np.nan
    for meta in metadata:
        del meta["agent_id"]
    got, want = _errors(arrays, metadata, 3)
    assert got == "ReplaySample.map contains 1 NaN/Inf value(s) (row 3 of the block)"
    assert got.startswith(want)


def test_negative_action_raises_naming_the_row() -> None:
    arrays, metadata = _block(np.random.default_rng(5), 4, 6)
    arrays["actions"][2, 5] = -3
    got, want = _errors(arrays, metadata, 2)
    assert want == "ReplaySample.actions must be >= 0, got -3"
    assert got == f"{want} (row 2, agent_id 'agent_2' of the block)"


def test_dones_outside_zero_one_raise() -> None:
    arrays, metadata = _block(np.random.default_rng(6), 3, 4)
    arrays["dones"] = arrays["dones"].astype(np.int64)
    arrays["dones"][1, 0] = 2
    got, want = _errors(arrays, metadata, 1)
    assert got == f"{want} (row 1, agent_id 'agent_1' of the block)"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("actions", np.zeros((3, 4)), "must have an integer dtype, got float64"),
        ("rewards", np.array([["a"] * 4] * 3), "must have a float dtype"),
        ("value_preds", np.zeros((3, 6), np.float32), "value_preds must have length"),
        ("features", np.zeros((3, 4, 2, 2), np.float32), "features must have shape"),
    ],
)
def test_dtype_and_shape_errors_match_the_constructor(field: str, value: Any, message: str) -> None:
    arrays, metadata = _block(np.random.default_rng(7), 3, 4)
    arrays[field] = value
    got, want = _errors(arrays, metadata, 0)
    assert got == want and message in got


def test_sidecar_errors_name_the_row() -> None:
    arrays, metadata = _block(np.random.default_rng(8), 3, 4)
    metadata[2]["feature_names"] = ["only_one", "two", "three", "four", "five", "six", "seven"]
    got, want = _errors(arrays, metadata, 2)
    assert "metadata['feature_names'] has 7 names" in want
    assert got == f"{want} (row 2, agent_id 'agent_2' of the block)"
    arrays, metadata = _block(np.random.default_rng(8), 3, 4)
    arrays["actions"][1, 0] = 4
    metadata[1]["action_dim"] = 4
    got, want = _errors(arrays, metadata, 1)
    assert want == "ReplaySample.metadata['action_dim'] is 4 but actions reach 4"
    assert got == f"{want} (row 1, agent_id 'agent_1' of the block)"
    metadata[1]["action_dim"] = True  # not an int: checked again though row 0's passed
    got, want = _errors(arrays, metadata, 1)
    assert got.startswith(want) and "positive int" in want


def test_row_count_must_match_the_sidecars() -> None:
    arrays, metadata = _block(np.random.default_rng(9), 3, 4)
    arrays["rewards"] = arrays["rewards"][:2]
    with pytest.raises(ReplayDataError, match=r"ReplaySample.rewards block has 2 rows, expected 3"):
        samples_from_block(arrays, metadata)


def test_capture_samples_equal_constructor_built_ones() -> None:
    cfg = WorldConfig(num_agents=5)
    frames = capture_frames(cfg, "scripted", 30, 3)
    samples = recorded_samples(frames.recorder, {"seed": 3})
    for (index, arrays), sample in zip(frames.recorder.iter_agent_arrays(), samples, strict=True):
        ref = ReplaySample(**arrays, metadata=dict(sample.metadata))
        assert index == sample.metadata["embedding_slot"]
        _assert_same(sample, ref)
    assert capture_rollout(cfg, "scripted", 30, seed=3).samples[0].timesteps == 30
