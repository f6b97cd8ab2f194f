"""Rollout capture from the town, Gymnasium and PettingZoo: samples, counters, alignment,
determinism, the capture directory, and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from numpy.typing import NDArray

from townlet.errors import ReplayDataError, RolloutError
from townlet.policy.replay import (
    ReplayDataset,
    ReplayDatasetConfig,
    ReplayEventCounts,
    compute_sample_metrics,
    load_replay_sample,
    record_events,
)
from townlet.policy.rollout import (
    RandomPolicy,
    RolloutBuffer,
    ScriptedPolicy,
    capture_rollout,
    episode_returns,
)
from townlet.policy.rollout.sources import _town_event_vector, counts_from_vector
from townlet.world import FEATURE_NAMES, WorldConfig, events_to_dicts, reset, scripted_actions, step

REFERENCE_ROOT = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "townlet-artifacts"
)
PHASE4 = REFERENCE_ROOT / "artifacts" / "phase4" / "queue_conflict"

Arr = NDArray[np.float32]


class EchoPolicy:
    """Action = whether feature 0 exceeds 0.5; log-prob = -feature 0; value = feature 1."""

    kind = "echo"

    def act(self, maps: Arr | None, features: Arr, rng: np.random.Generator) -> Any:
        actions = (features[:, 0] > 0.5).astype(np.int64)
        return actions, -features[:, 0].copy(), features[:, 1].copy()


@pytest.fixture(scope="module")
def town_capture() -> RolloutBuffer:
    return capture_rollout(WorldConfig(), "scripted", 500, seed=0)


def test_town_acceptance_capture_directory(town_capture: RolloutBuffer, tmp_path: Path) -> None:
    buffer = town_capture
    assert buffer.agent_ids == tuple(f"agent_{i}" for i in range(8))
    assert buffer.frames == 4000 and len(buffer) == 4000
    counts = buffer.event_counts
    assert counts.queue_conflict_events > 0 and counts.chat_success_events > 0
    assert counts.queue_conflict_intensity_sum > 0 and 0 < counts.chat_quality_mean <= 1
    out = buffer.save(tmp_path / "capture")
    names = sorted(p.name for p in out.iterdir())
    assert names[-2:] == ["rollout_sample_manifest.json", "rollout_sample_metrics.json"]
    assert "rollout_sample_agent_3_004.npz" in names and len(names) == 18
    manifest = json.loads((out / "rollout_sample_manifest.json").read_text())
    assert manifest[0] == {
        "sample": "rollout_sample_agent_0_001.npz",
        "meta": "rollout_sample_agent_0_001.json",
    }
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(out, batch_size=4))
    assert dataset.num_samples == 8 and len(dataset) == 2
    batch = next(iter(dataset))
    assert batch.maps.shape == (4, 500, 4, 11, 11) and batch.features.shape == (4, 500, 33)
    assert dataset.baseline_metrics["sample_count"] == 8.0
    loaded = dataset.samples[2]
    np.testing.assert_array_equal(loaded.map, buffer.samples[2].map)
    np.testing.assert_array_equal(loaded.value_preds, buffer.samples[2].value_preds)


def test_sample_format_matches_reference(town_capture: RolloutBuffer) -> None:
    sample = town_capture.samples[0]
    if not PHASE4.is_dir():
        pytest.skip(f"reference artifacts not found at {PHASE4}")
    ref = load_replay_sample(PHASE4 / "rollout_sample_anna_001.npz")
    assert sample.map.shape[1:] == ref.map.shape[1:] == (4, 11, 11)
    assert sample.map.shape == (500, 4, 11, 11) and sample.features.shape == (500, 33)
    assert len(sample.value_preds) == sample.timesteps + 1
    for name in ("map", "features", "actions", "old_log_probs", "value_preds", "rewards", "dones"):
        assert getattr(sample, name).dtype == getattr(ref, name).dtype
    meta = sample.metadata
    ref_keys = ["variant", "map_shape", "map_channels", "feature_names", "embedding_slot",
                "training_arrays", "timesteps", "value_pred_steps", "action_lookup", "action_dim",
                "agent_id", "frame_count", "metrics"]  # fmt: skip
    assert [k for k in meta if k in ref_keys] == ref_keys
    assert list(ref.metadata) == ref_keys
    assert meta["feature_names"] == list(FEATURE_NAMES) and meta["action_dim"] == 8
    assert meta["source"] == "town" and meta["policy"] == "scripted" and meta["seed"] == 0
    assert meta["social_stage"] == "OFF" and meta["observation_alignment"] == "decision_time"
    assert meta["metrics"] == compute_sample_metrics(sample)
    assert meta["metrics"]["action_wait_count"] > 0  # named actions reach the metrics


def test_scripted_log_probs_values_and_actions(town_capture: RolloutBuffer) -> None:
    state = reset(WorldConfig(), 0)
    rng = np.random.default_rng([0, 3])
    first = scripted_actions(state, None, rng)
    for i, sample in enumerate(town_capture.samples):
        assert sample.actions[0] == first[i]
        assert not sample.old_log_probs.any() and not sample.value_preds.any()


def test_random_policy_log_probs() -> None:
    buffer = capture_rollout(WorldConfig(num_agents=3), "random", 20, seed=4)
    for sample in buffer.samples:
        np.testing.assert_allclose(sample.old_log_probs, math.log(1 / 8), rtol=1e-6)
    assert buffer.policy == "random" and len(set(buffer.samples[0].actions.tolist())) > 2


def test_decision_time_alignment_town() -> None:
    buffer = capture_rollout(WorldConfig(num_agents=4), EchoPolicy(), 40, seed=2)
    state = reset(WorldConfig(num_agents=4), 2)
    for sample in buffer.samples:
        np.testing.assert_array_equal(sample.old_log_probs, -sample.features[:, 0])
        np.testing.assert_array_equal(sample.actions, sample.features[:, 0] > 0.5)
        np.testing.assert_array_equal(sample.value_preds[:-1], sample.features[:, 1])
    # frame 0 holds the observation of the reset state, not the post-step one
    from townlet.world import observe

    maps, features = observe(state)
    np.testing.assert_array_equal(buffer.samples[1].features[0], features[1])
    np.testing.assert_array_equal(buffer.samples[1].map[0], maps[1])


def test_bootstrap_value_is_next_observation_value() -> None:
    cfg = WorldConfig(num_agents=3)
    ticks = 12
    buffer = capture_rollout(cfg, EchoPolicy(), ticks, seed=1)
    state = reset(cfg, 1)
    from townlet.world import observe

    for _ in range(ticks):
        _, features = observe(state)
        state, _, _, _ = step(state, (features[:, 0] > 0.5).astype(np.int64))
    _, final = observe(state)
    for i, sample in enumerate(buffer.samples):
        assert not sample.dones[-1]
        assert sample.value_preds[-1] == final[i, 1]
        assert sample.metadata["metrics"]["value_pred_last"] == pytest.approx(final[i, 1])


def test_town_event_vector_equals_record_events() -> None:
    cfg = WorldConfig()
    state = reset(cfg, 0)
    rng = np.random.default_rng(0)
    vector = np.zeros(8)
    counts = ReplayEventCounts()
    for _ in range(300):
        state, _, _, events = step(state, scripted_actions(state, cfg, rng))
        vector += _town_event_vector(events)
        counts = record_events(counts, events_to_dicts(events))
    fast = counts_from_vector(vector)
    assert counts.queue_conflict_events > 0 and counts.chat_failure_events > 0
    names = ("queue_conflict_events", "shared_meal_events", "late_help_events",
             "shift_takeover_events", "chat_success_events", "chat_failure_events")  # fmt: skip
    for name in names:
        assert getattr(fast, name) == getattr(counts, name)
    assert fast.queue_conflict_intensity_sum == pytest.approx(counts.queue_conflict_intensity_sum)
    assert fast.chat_quality_mean == pytest.approx(counts.chat_quality_mean)


def test_determinism_and_seed_sensitivity() -> None:
    cfg = WorldConfig(num_agents=4)
    a = capture_rollout(cfg, "scripted", 60, seed=7)
    b = capture_rollout(cfg, "scripted", 60, seed=7)
    c = capture_rollout(cfg, "scripted", 60, seed=8)
    for x, y in zip(a.samples, b.samples, strict=True):
        for name in ("map", "features", "actions", "old_log_probs", "value_preds", "rewards"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
        assert dict(x.metadata) == dict(y.metadata)
    assert a.event_counts == b.event_counts
    assert not np.array_equal(a.samples[0].features, c.samples[0].features)


def test_fainting_sets_done_and_trajectory_continues() -> None:
    cfg = WorldConfig(num_agents=8, hunger_decay=0.05)
    buffer = capture_rollout(cfg, "random", 60, seed=0)
    sample = buffer.samples[0]
    assert sample.timesteps == 60 and sample.dones.any()
    cut = int(np.flatnonzero(sample.dones)[0])
    assert sample.rewards[cut] <= -1.0  # the faint penalty
    assert sample.features[cut + 1, FEATURE_NAMES.index("ctx_reset_flag")] == 1.0
    returns = episode_returns(sample)
    assert returns[0] == pytest.approx(float(sample.rewards[: cut + 1].sum(dtype=np.float64)))
    summary = buffer.summary()
    assert summary["episodes"] == sum(int(s.dones.sum()) for s in buffer.samples)


def test_truncation_marks_every_agent_done() -> None:
    cfg = WorldConfig(num_agents=2, episode_length=10)
    buffer = capture_rollout(cfg, "scripted", 25, seed=0)
    for sample in buffer.samples:
        assert np.flatnonzero(sample.dones).tolist() == [9, 19]
        assert sample.features[10, FEATURE_NAMES.index("episode_progress")] == 0.0


def test_social_stage_recorded() -> None:
    import attrs

    buffer = capture_rollout(
        attrs.evolve(WorldConfig(num_agents=2), social_reward_stage="C2"), "scripted", 5
    )
    assert buffer.social_stage == "C2" and buffer.samples[0].metadata["social_stage"] == "C2"


def test_build_dataset_carries_counters(town_capture: RolloutBuffer) -> None:
    dataset = town_capture.build_dataset(batch_size=3, drop_last=True)
    assert len(dataset) == 2 and dataset.rollout_ticks == 500
    assert dataset.label == "rollout_buffer" and dataset.data_mode == "rollout"
    assert dataset.event_counts == town_capture.event_counts
    assert dataset.baseline_metrics == town_capture.baseline_metrics
    assert dataset.baseline_metrics["sample_count"] == 8.0


def test_summary(town_capture: RolloutBuffer) -> None:
    summary = town_capture.summary()
    expected = np.mean([s.rewards.sum(dtype=np.float64) for s in town_capture.samples])
    assert summary["mean_return"] == pytest.approx(expected)
    assert summary["frames"] == 4000 and summary["agents"] == 8
    assert summary["events"]["queue_conflict_events"] > 0
    json.dumps(summary)


def test_cartpole_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    from townlet.envs.gymnasium_adapter import make_gymnasium_source

    source = make_gymnasium_source("CartPole-v1", 4)
    buffer = capture_rollout(source, "random", 100, seed=3)
    assert buffer.source == "gymnasium:CartPole-v1" and buffer.social_stage is None
    sample = buffer.samples[0]
    assert sample.map.shape == (100, 0, 0, 0) and sample.features.shape == (100, 4)
    assert sample.metadata["feature_names"] == ["obs_0", "obs_1", "obs_2", "obs_3"]
    assert sample.dones.any() and buffer.summary()["mean_episode_return"] > 5
    np.testing.assert_allclose(sample.old_log_probs, math.log(0.5), rtol=1e-6)
    out = buffer.save(tmp_path / "cartpole", compress=False)
    with pytest.raises(ReplayDataError, match="conflict feature"):
        ReplayDataset(ReplayDatasetConfig.from_capture_dir(out))
    cfg = ReplayDatasetConfig.from_capture_dir(out, batch_size=2, require_conflict_features=False)
    dataset = ReplayDataset(cfg)
    batch = next(iter(dataset))
    assert batch.features.shape == (2, 100, 4)
    np.testing.assert_array_equal(dataset.samples[1].features, buffer.samples[1].features)
    # decision time: the recorded observation is the one the action was chosen from
    again = capture_rollout(make_gymnasium_source("CartPole-v1", 2), EchoPolicy(), 50, seed=0)
    for s in again.samples:
        np.testing.assert_array_equal(s.actions, s.features[:, 0] > 0.5)
        np.testing.assert_array_equal(s.old_log_probs, -s.features[:, 0])


def test_pettingzoo_town_env() -> None:
    pytest.importorskip("pettingzoo")
    from townlet.envs.pettingzoo_town import make_town_env

    cfg = WorldConfig(num_agents=3)
    buffer = capture_rollout(make_town_env(cfg), "scripted", 30, seed=5)
    direct = capture_rollout(cfg, "scripted", 30, seed=5)
    assert buffer.source == "pettingzoo:townlet_town_v0"
    assert buffer.samples[0].metadata["feature_names"] == list(FEATURE_NAMES)
    for x, y in zip(buffer.samples, direct.samples, strict=True):
        np.testing.assert_array_equal(x.actions, y.actions)
        np.testing.assert_array_equal(x.features, y.features)
    assert buffer.event_counts == direct.event_counts


def test_pettingzoo_agents_leave_and_return() -> None:
    pytest.importorskip("pettingzoo")
    from townlet.envs.pettingzoo_town import make_town_env

    env = make_town_env(WorldConfig(num_agents=4, hunger_decay=0.05))
    buffer = capture_rollout(env, "random", 80, seed=0)
    lengths = [s.timesteps for s in buffer.samples]
    assert min(lengths) < 80 and max(lengths) <= 80
    for sample in buffer.samples:
        if sample.timesteps < 80:
            assert sample.dones.any()


def test_save_into_existing_directory(town_capture: RolloutBuffer, tmp_path: Path) -> None:
    target = tmp_path / "cap"
    target.mkdir()
    (target / "notes.txt").write_text("keep")
    small = capture_rollout(WorldConfig(num_agents=2), "scripted", 3)
    small.save(target, prefix="run")
    assert (target / "notes.txt").read_text() == "keep"
    assert (
        json.loads((target / "run_manifest.json").read_text())[1]["sample"] == "run_agent_1_002.npz"
    )
    assert not list(tmp_path.glob(".*tmp"))  # no staging directory left behind
    with pytest.raises(RolloutError, match="prefix"):
        small.save(target, prefix="../x")
    with pytest.raises(RolloutError, match="not a directory"):
        small.save(target / "notes.txt")


@pytest.mark.parametrize(
    ("ticks", "seed", "match"),
    [
        (0, 0, "ticks must be positive to capture a rollout, got 0"),
        (-3, 0, "ticks must be positive"),
        (True, 0, "ticks must be positive"),
        (5, -1, "seed must be an int >= 0"),
    ],
)
def test_bad_requests(ticks: Any, seed: Any, match: str) -> None:
    with pytest.raises(RolloutError, match=match):
        capture_rollout(WorldConfig(num_agents=1), "scripted", ticks, seed)


def test_bad_sources_and_policies(tmp_path: Path) -> None:
    with pytest.raises(RolloutError, match="env_or_config must be a WorldConfig"):
        capture_rollout(object(), "random", 3)
    with pytest.raises(RolloutError, match="'nope' is none of these"):
        capture_rollout(WorldConfig(num_agents=1), "nope", 3)
    with pytest.raises(RolloutError, match="has no act"):
        capture_rollout(WorldConfig(num_agents=1), object(), 3)

    class Wrong:
        def act(self, maps: Any, features: Arr, rng: Any) -> Any:
            return np.full(len(features), 9), np.zeros(len(features)), np.zeros(len(features))

    with pytest.raises(RolloutError, match=r"policy actions must lie in \[0, 8\), got \[9, 9\]"):
        capture_rollout(WorldConfig(num_agents=2), Wrong(), 3)
    pytest.importorskip("gymnasium")
    from townlet.envs.gymnasium_adapter import make_gymnasium_source

    with pytest.raises(RolloutError, match="scripted policy reads the town's state"):
        capture_rollout(make_gymnasium_source("CartPole-v1", 1), ScriptedPolicy(), 3)
    assert RandomPolicy(action_dim=2).kind == "random"


def test_pettingzoo_errors() -> None:
    gym = pytest.importorskip("gymnasium")

    class Env:
        metadata: ClassVar[dict[str, str]] = {"name": "toy"}

        def __init__(self, agents: list[str], space: Any) -> None:
            self.possible_agents = agents
            self.space = space

        def action_space(self, agent: str) -> Any:
            return self.space

        def observation_space(self, agent: str) -> Any:
            return gym.spaces.Box(0, 1, (3,))

        def reset(self, seed: int | None = None) -> Any:
            raise AssertionError("not reached")

        def step(self, actions: Any) -> Any:
            raise AssertionError("not reached")

    with pytest.raises(RolloutError, match="No agents available for rollout capture"):
        capture_rollout(Env([], gym.spaces.Discrete(2)), "random", 3)
    with pytest.raises(RolloutError, match="pettingzoo:toy: action space of 'a' must be Discrete"):
        capture_rollout(Env(["a"], gym.spaces.Box(0, 1, (2,))), "random", 3)


def test_buffer_methods_are_deprecated_wrappers_of_the_functions(tmp_path: Path) -> None:
    from townlet.policy.rollout import build_rollout_dataset, rollout_summary, save_rollout

    buffer = capture_rollout(WorldConfig(num_agents=2), "scripted", 5, 0)
    with pytest.warns(DeprecationWarning, match=r"use rollout_summary\(buffer\)"):
        assert buffer.summary() == rollout_summary(buffer)
    with pytest.warns(DeprecationWarning, match="use build_rollout_dataset"):
        assert len(buffer.build_dataset(batch_size=2)) == len(
            build_rollout_dataset(buffer, batch_size=2)
        )
    with pytest.warns(DeprecationWarning, match="save_rollout"):
        old = buffer.save(tmp_path / "old")
    new = save_rollout(buffer, tmp_path / "new")
    assert sorted(p.name for p in old.iterdir()) == sorted(p.name for p in new.iterdir())


def test_capture_takes_a_policy_and_paths_are_resolved_by_the_caller(tmp_path: Path) -> None:
    from townlet.policy.policy_argument import resolve_policy_argument

    assert resolve_policy_argument("scripted") == "scripted"
    with pytest.raises(RolloutError, match="is none of these"):
        resolve_policy_argument(tmp_path / "missing.pt")
    pytest.importorskip("torch")
    from townlet.errors import CheckpointError

    broken = tmp_path / "broken.pt"
    broken.write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        resolve_policy_argument(broken)
    with (
        pytest.warns(DeprecationWarning, match="checkpoint path as the capture policy"),
        pytest.raises(CheckpointError),
    ):
        capture_rollout(WorldConfig(num_agents=2), broken, 5, 0)
