"""ReplaySample: conversion, validation, derived properties."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _replay_helpers import FEATURE_NAMES, make_sample
from townlet.errors import ReplayDataError
from townlet.policy.replay import (
    TRAINING_ARRAY_FIELDS,
    ReplaySample,
    sample_conflict_stats,
    sample_signature,
)


def _arrays(timesteps: int = 3, **overrides: Any) -> dict[str, Any]:
    arrays: dict[str, Any] = {
        "map": np.zeros((timesteps, 1, 2, 2), np.float32),
        "features": np.zeros((timesteps, 4), np.float32),
        "actions": np.zeros(timesteps, np.int64),
        "old_log_probs": np.zeros(timesteps, np.float32),
        "value_preds": np.zeros(timesteps + 1, np.float32),
        "rewards": np.zeros(timesteps, np.float32),
        "dones": np.zeros(timesteps, bool),
    }
    arrays.update(overrides)
    return arrays


def test_valid_sample_keeps_arrays_and_fills_metadata_defaults() -> None:
    sample = ReplaySample(**_arrays(), metadata={"feature_names": FEATURE_NAMES})
    assert sample.timesteps == 3
    assert sample.feature_dim == 4
    assert sample.map_shape == (1, 2, 2)
    assert sample.has_map and sample.has_bootstrap_value
    assert sample.metadata["training_arrays"] == list(TRAINING_ARRAY_FIELDS)
    assert sample.metadata["timesteps"] == 3
    assert sample.metadata["value_pred_steps"] == 4
    assert sample.feature_names == tuple(FEATURE_NAMES)


def test_arrays_are_read_only_and_metadata_immutable() -> None:
    sample = make_sample()
    with pytest.raises(ValueError, match="read-only"):
        sample.rewards[0] = 1.0
    with pytest.raises(TypeError):
        sample.metadata["timesteps"] = 9  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        sample.rewards = np.zeros(3, np.float32)  # type: ignore[misc]


def test_caller_arrays_keep_their_flags() -> None:
    rewards = np.zeros(3, np.float32)
    ReplaySample(**_arrays(rewards=rewards))
    rewards[0] = 1.0  # still writable: the record took a read-only view


def test_dtypes_are_converted_to_canonical() -> None:
    sample = ReplaySample(
        **_arrays(
            features=np.zeros((3, 4), np.float64),
            actions=np.array([0, 1, 2], np.int32),
            rewards=[0.0, 1.0, 2.0],
            dones=np.array([0, 1, 0], np.int8),
        )
    )
    assert sample.features.dtype == np.float32
    assert sample.actions.dtype == np.int64
    assert sample.rewards.dtype == np.float32
    assert sample.dones.dtype == np.bool_
    assert sample.dones.tolist() == [False, True, False]


def test_features_only_sample_gets_empty_map() -> None:
    arrays = _arrays()
    del arrays["map"]
    sample = ReplaySample(**arrays)
    assert sample.map.shape == (3, 0, 0, 0)
    assert not sample.has_map
    assert sample.map_shape == (0, 0, 0)


def test_reference_normalisation_of_single_step_shapes() -> None:
    sample = ReplaySample(
        map=np.zeros((1, 2, 2), np.float32),
        features=np.zeros(4, np.float32),
        actions=np.array(2),
        old_log_probs=np.array(0.0, np.float32),
        value_preds=np.array(0.5, np.float32),
        rewards=np.array(1.0, np.float32),
        dones=np.array(True),
    )
    assert sample.map.shape == (1, 1, 2, 2)
    assert sample.features.shape == (1, 4)
    assert sample.actions.shape == (1,)
    assert not sample.has_bootstrap_value


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"rewards": np.zeros(2, np.float32)},
            "share timestep length; expected 3, got 2 for rewards",
        ),
        ({"dones": np.zeros((3, 2), bool)}, r"ReplaySample.dones must be 1D, got shape \(3, 2\)"),
        ({"map": np.zeros((3, 4), np.float32)}, r"ReplaySample.map must have shape"),
        ({"map": np.zeros((2, 1, 2, 2), np.float32)}, "map timestep count must match"),
        ({"features": np.zeros((2, 4), np.float32)}, "features timestep count must match"),
        ({"features": np.zeros((3, 4, 1), np.float32)}, r"ReplaySample.features must have shape"),
        ({"value_preds": np.zeros(5, np.float32)}, "got 5 for 3 step"),
        ({"actions": np.array([0.0, 1.0, 2.0])}, "actions must have an integer dtype"),
        ({"actions": np.array([0, -1, 2])}, "actions must be >= 0"),
        ({"rewards": np.array(["a", "b", "c"])}, "rewards must have a float dtype"),
        ({"dones": np.array([0, 2, 1])}, "dones must be bool"),
        ({"rewards": np.array([0.0, np.nan, 1.0], np.float32)}, "rewards contains 1 NaN/Inf"),
        ({"features": np.full((3, 4), np.inf, np.float32)}, "features contains 12 NaN/Inf"),
        ({"old_log_probs": np.array([0.0, -np.inf, 0.0])}, "old_log_probs contains 1"),
        ({"value_preds": np.array([0, 1, 2, 3], object)}, "value_preds is an object array"),
    ],
)
def test_invalid_arrays_raise_naming_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplayDataError, match=message):
        ReplaySample(**_arrays(**overrides))


def test_empty_sample_is_rejected() -> None:
    with pytest.raises(ReplayDataError, match="at least one timestep"):
        ReplaySample(**_arrays(0, value_preds=np.zeros(0, np.float32)))


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"feature_names": list("abcde")}, "has 5 names but features have 4 columns"),
        ({"feature_names": "abcd"}, "feature_names'\\] must be a list of str"),
        ({"timesteps": 7}, r"metadata\['timesteps'\] is 7 but the arrays give 3"),
        ({"value_pred_steps": 3}, r"metadata\['value_pred_steps'\] is 3 but the arrays give 4"),
        ({"action_dim": 0}, "action_dim'\\] must be a positive int"),
        ({"action_dim": 2}, r"action_dim'\] is 2 but actions reach 2"),
    ],
)
def test_inconsistent_metadata_is_rejected(metadata: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplayDataError, match=message):
        ReplaySample(**_arrays(actions=np.array([0, 2, 1])), metadata=metadata)


def test_action_dim_prefers_sidecar_then_max_plus_one() -> None:
    assert ReplaySample(**_arrays(actions=np.array([0, 2, 1]))).action_dim == 3
    declared = ReplaySample(**_arrays(actions=np.array([0, 2, 1])), metadata={"action_dim": 5})
    assert declared.action_dim == 5


def test_conflict_stats_are_feature_means() -> None:
    features = np.zeros((3, 4), np.float32)
    features[:, 1] = [0.0, 0.5, 1.0]
    features[:, 2] = [1.0, 2.0, 3.0]
    sample = ReplaySample(**_arrays(features=features), metadata={"feature_names": FEATURE_NAMES})
    assert sample.conflict_stats() == {"rivalry_max": 0.5, "rivalry_avoid_count": 2.0}
    assert sample_conflict_stats(ReplaySample(**_arrays())) == {}


def test_signature_orders_by_timesteps() -> None:
    short, long = make_sample(2), make_sample(5)
    assert sample_signature(short) < sample_signature(long)
    assert sample_signature(short) == sample_signature(make_sample(2, seed=9))


def test_evolve_revalidates() -> None:
    sample = make_sample()
    with pytest.raises(ReplayDataError, match="rewards"):
        attrs.evolve(sample, rewards=np.zeros(7, np.float32))


_lengths = st.integers(min_value=1, max_value=6)


@settings(max_examples=60, deadline=None)
@given(
    t=_lengths,
    lengths=st.fixed_dictionaries(
        {f: _lengths for f in ("old_log_probs", "rewards", "dones", "map", "features")}
    ),
    values=st.integers(min_value=1, max_value=8),
)
def test_property_lengths_accepted_iff_consistent(
    t: int, lengths: dict[str, int], values: int
) -> None:
    arrays = _arrays(t)
    arrays["old_log_probs"] = np.zeros(lengths["old_log_probs"], np.float32)
    arrays["rewards"] = np.zeros(lengths["rewards"], np.float32)
    arrays["dones"] = np.zeros(lengths["dones"], bool)
    arrays["map"] = np.zeros((lengths["map"], 1, 1, 1), np.float32)
    arrays["features"] = np.zeros((lengths["features"], 2), np.float32)
    arrays["value_preds"] = np.zeros(values, np.float32)
    consistent = all(n == t for n in lengths.values()) and values in (t, t + 1)
    if consistent:
        sample = ReplaySample(**arrays)
        assert sample.timesteps == t
        assert sample.has_bootstrap_value == (values == t + 1)
    else:
        with pytest.raises(ReplayDataError, match=r"ReplaySample"):
            ReplaySample(**arrays)


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from(["map", "features", *TRAINING_ARRAY_FIELDS]),
    ndim=st.integers(min_value=0, max_value=5),
)
def test_property_rank_rules(field: str, ndim: int) -> None:
    t = 1  # with T=1 every normalisation the reference allows is legal
    good_rank = {"map": (3, 4), "features": (1, 2)}.get(field, (0, 1))
    shape = (t,) * ndim
    arrays = _arrays(t)
    dtype = arrays[field].dtype
    arrays[field] = np.zeros(shape, dtype)
    if field == "value_preds" and ndim == 1:
        arrays[field] = np.zeros(1, dtype)
    if ndim in good_rank:
        sample = ReplaySample(**arrays)
        assert getattr(sample, field).ndim == {"map": 4, "features": 2}.get(field, 1)
    else:
        with pytest.raises(ReplayDataError, match=f"ReplaySample.{field}"):
            ReplaySample(**arrays)


def test_replay_package_imports_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.') or name == 'cattrs':\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import townlet, townlet.policy.replay, townlet.cli.replay_cmd\n"
        "assert townlet.ReplayDataset is townlet.policy.replay.ReplayDataset\n"
        "assert 'torch' not in sys.modules and 'cattrs' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
