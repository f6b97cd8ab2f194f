"""train_ppo / ppo_epoch: the reference corpus, the golden case, logging, guards, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _replay_helpers import FEATURE_NAMES, capture_dirs, make_sample, reference_root  # noqa: E402
from townlet.config import PPOConfig  # noqa: E402
from townlet.dto.telemetry import (  # noqa: E402
    BASELINE_KEYS,
    CORE_KEYS,
    HEALTH_KEYS,
    SOCIAL_KEYS,
    V11_KEYS,
    telemetry_line,
)
from townlet.dto.telemetry_validate import validate_telemetry  # noqa: E402
from townlet.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    NonFiniteTrainingError,
    ReplayDataError,
    TrainingFailedError,
)
from townlet.policy.nn.checkpoint import save_checkpoint  # noqa: E402
from townlet.policy.nn.network import init_params  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.replay import (  # noqa: E402
    InMemoryReplayDataset,
    ReplayBatch,
    ReplayDataset,
    ReplayDatasetConfig,
    ReplayEventCounts,
    ReplaySample,
)
from townlet.policy.training.strategies.ppo.checkpoint import (  # noqa: E402
    load_ppo_state,
    save_ppo_state,
)
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch  # noqa: E402
from townlet.policy.training.strategies.ppo.replay import (  # noqa: E402
    _check_batch,
    ppo_epoch,
    prepare_batches,
    replay_epoch,
)
from townlet.policy.training.strategies.ppo.step import init_ppo_state  # noqa: E402
from townlet.policy.training.strategies.ppo.summary import (  # noqa: E402
    AnnealContext,
    PPODatasetInfo,
    dataset_info,
)
from townlet.policy.training.strategies.ppo.train import train_ppo  # noqa: E402

SMALL = NetworkSpec(map_shape=(2, 3, 3), feature_dim=4, action_dim=3, hidden_dim=16)
FIXED_CLOCK = lambda: 0.0  # noqa: E731 - deterministic epoch_duration_sec


def _toy(n: int = 3, timesteps: int = 6, **kwargs: Any) -> InMemoryReplayDataset:
    samples = [make_sample(timesteps, seed=i) for i in range(n)]
    return InMemoryReplayDataset(samples, **kwargs)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- reference corpus ---------------------------------------------------------------------------

REFERENCE_ALLOWED = set(CORE_KEYS + HEALTH_KEYS + V11_KEYS + SOCIAL_KEYS + BASELINE_KEYS)


def _reference_rules(line: dict[str, Any]) -> None:
    """spec §19.9: v1.0 + health + v1.1 keys present and finite, data_mode a string, version
    1.2, and only baseline_* / conflict.* besides them outside anneal."""
    for key in set(CORE_KEYS + HEALTH_KEYS + V11_KEYS + SOCIAL_KEYS) - {"data_mode"}:
        value = line[key]
        assert isinstance(value, int | float) and math.isfinite(value), key
    assert isinstance(line["data_mode"], str)
    assert line["telemetry_version"] == 1.2
    extra = {k for k in line if k not in REFERENCE_ALLOWED and not k.startswith("conflict.")}
    assert not extra


@pytest.mark.parametrize("capture", capture_dirs(), ids=lambda p: p.name)
def test_every_reference_capture_trains_and_validates(capture: Path, tmp_path: Path) -> None:
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(capture, batch_size=2))
    log = tmp_path / "ppo.jsonl"
    run = train_ppo(dataset, epochs=3, log_path=log, cfg=PPOConfig(mini_batch_size=64))
    lines = _lines(log)
    assert [line["epoch"] for line in lines] == [1.0, 2.0, 3.0]
    assert validate_telemetry(log).errors == ()
    for line in lines:
        _reference_rules(line)
    samples = dataset.num_samples
    timesteps = sum(s.timesteps for s in dataset.samples)
    assert run.result.transitions == timesteps
    assert run.result.steps == 3 * timesteps
    assert run.result.baseline_sample_count == samples
    assert run.result.data_mode == "replay" and run.state.cycle_id == -1


def test_queue_conflict_matches_reference_structure() -> None:
    """The reference's own telemetry of this capture (generated/, batch size 1): counts and
    dataset-level values are reproduced exactly; losses depend on its torch RNG."""
    root = reference_root()
    capture = root / "artifacts" / "phase4" / "queue_conflict"
    reference = _lines(root / "generated" / "ppo_v1_2_queue_conflict_bs1.jsonl")[0]
    run = train_ppo(ReplayDataset(ReplayDatasetConfig.from_capture_dir(capture)), epochs=1)
    line = telemetry_line(run.result)
    exact = [
        "updates", "transitions", "steps", "adv_zero_std_batches", "adv_min_std", "lr",
        "cycle_id", "log_stream_offset", "rollout_ticks", "reward_advantage_corr",
        "baseline_sample_count", "baseline_reward_sum",
        "baseline_reward_sum_mean", "queue_conflict_events",
    ]  # fmt: skip
    assert line["data_mode"] == reference["data_mode"] == "replay"
    for key in exact:
        assert line[key] == pytest.approx(reference[key], rel=1e-6), key
    assert line["baseline_reward_mean"] == pytest.approx(reference["baseline_reward_mean"])
    assert line["baseline_log_prob_mean"] == pytest.approx(reference["baseline_log_prob_mean"])
    for key, value in reference.items():
        if key.startswith("conflict."):
            assert line[key] == pytest.approx(value, rel=1e-6), key
    # Fresh torch-default init over 4 actions: entropy close to ln 4, as the reference's.
    assert line["loss_entropy"] == pytest.approx(reference["loss_entropy"], abs=0.01)


# -- golden (spec §18) ---------------------------------------------------------------------------


def _golden_dataset() -> InMemoryReplayDataset:
    rewards = np.array([0.06, 0.08], np.float32)
    old_log_probs = np.array([-0.2, -0.3], np.float32)
    sample = ReplaySample(
        map=np.zeros((2, 4, 11, 11), np.float32),
        features=np.tile(np.array([0.9, 0.0, 0.0, 0.1], np.float32), (2, 1)),
        actions=np.array([1, 2]),
        old_log_probs=old_log_probs,
        value_preds=np.array([0.1, 0.05, 0.01], np.float32),
        rewards=rewards,
        dones=np.array([False, True]),
        metadata={"feature_names": FEATURE_NAMES},
    )
    metrics = {
        "reward_sum": float(rewards.sum()),
        "reward_sum_mean": float(rewards.sum()),
        "reward_mean": float(rewards.mean()),
        "log_prob_mean": float(old_log_probs.mean()),
        "sample_count": 1.0,
    }
    return InMemoryReplayDataset(
        [sample],
        baseline_metrics=metrics,
        event_counts=ReplayEventCounts(chat_success_events=1, chat_quality_sum=0.8),
    )


GOLDEN_EXACT = [
    "adv_mean", "adv_min_std", "adv_std", "adv_zero_std_batches",
    "baseline_log_prob_mean", "baseline_reward_mean", "baseline_reward_sum",
    "baseline_reward_sum_mean", "baseline_sample_count", "chat_failure_events",
    "chat_quality_mean", "chat_success_events", "clip_fraction", "clip_fraction_max",
    "clip_triggered_minibatches", "conflict.rivalry_avoid_count_max_avg",
    "conflict.rivalry_avoid_count_mean_avg", "conflict.rivalry_max_max_avg",
    "conflict.rivalry_max_mean_avg", "cycle_id", "data_mode", "epoch", "late_help_events",
    "log_stream_offset", "lr", "queue_conflict_events", "queue_conflict_intensity_sum",
    "reward_advantage_corr", "rollout_ticks", "shared_meal_events", "shift_takeover_events",
    "steps", "telemetry_version", "transitions", "updates",
]  # fmt: skip


def test_golden_ppo_social_baseline(tmp_path: Path) -> None:
    golden = json.loads((reference_root() / "tests/golden/ppo_social/baseline.json").read_text())
    log = tmp_path / "social_chat.jsonl"
    run = train_ppo(_golden_dataset(), epochs=1, seed=0, log_path=log)
    (line,) = _lines(log)
    assert set(line) == set(golden)  # the same keys, no more
    for key in GOLDEN_EXACT:
        expected = golden[key]
        if isinstance(expected, str):
            assert line[key] == expected, key
        else:
            assert line[key] == pytest.approx(expected, rel=1e-5, abs=1e-6), key
    # Values of the network on the reference's observation (built by its ObservationBuilder,
    # not in the corpus): only their size can be compared.
    assert line["loss_entropy"] == pytest.approx(math.log(3), abs=2e-3)
    assert line["batch_entropy_mean"] == line["loss_entropy"]
    assert 0.7 < line["kl_divergence"] < 1.0 and 0.8 < line["kl_divergence_max"] < 1.0
    assert line["grad_norm_max"] >= line["grad_norm"] > 0
    assert run.state.cycle_id == 0 and run.result.data_mode == "rollout"


# -- determinism, continuation, checkpoints -----------------------------------------------------


def _records(run: Any) -> list[dict[str, Any]]:
    return [r.to_dict() for r in run.results]


def test_same_seed_same_telemetry_except_duration(tmp_path: Path) -> None:
    dataset = _toy(batch_size=2)
    first = train_ppo(dataset, epochs=3, seed=5, spec=SMALL, log_path=tmp_path / "a.jsonl")
    second = train_ppo(dataset, epochs=3, seed=5, spec=SMALL, log_path=tmp_path / "b.jsonl")
    a, b = _lines(tmp_path / "a.jsonl"), _lines(tmp_path / "b.jsonl")
    for line in a + b:
        line.pop("epoch_duration_sec")
    assert a == b
    other = train_ppo(dataset, epochs=3, seed=6, spec=SMALL, clock=FIXED_CLOCK)
    assert other.result.loss_total != first.result.loss_total
    assert second.result.loss_total == first.result.loss_total


def test_fixed_clock_gives_identical_records() -> None:
    dataset = _toy()
    first = train_ppo(dataset, epochs=2, seed=1, spec=SMALL, clock=FIXED_CLOCK)
    second = train_ppo(dataset, epochs=2, seed=1, spec=SMALL, clock=FIXED_CLOCK)
    assert _records(first) == _records(second)
    assert first.result.epoch_duration_sec == 0.0 and first.result.duration_sec == 0.0


def test_continuing_equals_one_long_run(tmp_path: Path) -> None:
    dataset = _toy(batch_size=2)
    common: dict[str, Any] = {"clock": FIXED_CLOCK, "data_mode": "replay"}
    whole = train_ppo(dataset, epochs=4, seed=3, spec=SMALL, **common)
    half = train_ppo(dataset, epochs=2, seed=3, spec=SMALL, **common)
    path = save_ppo_state(tmp_path / "state.pt", half.state)
    resumed = train_ppo(dataset, epochs=2, state=load_ppo_state(path), **common)
    assert resumed.state.steps == whole.state.steps == 4 * 18
    assert resumed.state.log_stream_offset == 4 and resumed.state.updates == whole.state.updates
    for name, value in whole.state.params.items():
        assert torch.equal(value, resumed.state.params[name]), name
    tail = [r.to_dict() for r in whole.results[2:]]
    again = [attrs.evolve(r, epoch=r.epoch + 2).to_dict() for r in resumed.results]
    assert again == tail


def test_cross_call_counters_and_cycle_ids() -> None:
    """spec §19.11: offsets 1, 2, 3 across replay -> rollout -> mixed; cycles 0, 0, 1."""
    replay = InMemoryReplayDataset([make_sample(4)])
    first = train_ppo(replay, epochs=1, spec=SMALL, data_mode="replay")
    assert (first.result.cycle_id, first.result.log_stream_offset) == (0.0, 1.0)
    assert first.state.cycle_id == -1  # replay does not store its cycle
    second = train_ppo(replay, epochs=1, state=first.state)
    assert (second.result.cycle_id, second.result.log_stream_offset) == (0.0, 2.0)
    third = train_ppo(replay, epochs=1, state=second.state, data_mode="mixed")
    assert (third.result.cycle_id, third.result.log_stream_offset) == (1.0, 3.0)
    assert third.result.data_mode == "mixed" and third.result.steps == 12.0
    assert third.result.epoch == 1.0  # restarts per call


def test_anneal_context_fills_fields_without_storing_cycle() -> None:
    dataset = _toy()
    anneal = AnnealContext(cycle=4, dataset_label="toy", bc_accuracy=0.97)
    run = train_ppo(dataset, epochs=2, spec=SMALL, anneal_context=anneal)
    assert all(r.anneal_cycle == 4.0 and r.anneal_dataset == "toy" for r in run.results)
    assert run.result.cycle_id == 5.0  # in-memory data: the stage cycle + 1
    assert run.state.cycle_id == -1
    assert run.result.anneal_loss_flag is False


def test_value_only_epochs_train_only_the_value_head() -> None:
    dataset = _toy()
    run = train_ppo(dataset, epochs=2, spec=SMALL, value_only_epochs=1, clock=FIXED_CLOCK)
    assert run.results[0].critic_warmup is True and run.results[1].critic_warmup is None
    warm = train_ppo(dataset, epochs=1, spec=SMALL, value_only_epochs=1)
    fresh = init_params(SMALL, 0)
    for name, value in warm.state.params.items():
        changed = not torch.equal(value, fresh[name])
        assert changed == name.startswith("value_head"), name


def test_bc_coef_reports_loss_bc(tmp_path: Path) -> None:
    log = tmp_path / "bc.jsonl"
    run = train_ppo(_toy(), epochs=1, spec=SMALL, cfg=PPOConfig(bc_coef=0.3), log_path=log)
    (line,) = _lines(log)
    assert line["bc_coef"] == 0.3 and line["loss_bc"] == run.result.loss_bc > 0


# -- logging (spec §13) -------------------------------------------------------------------------


def test_log_frequency_samples_epochs(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "ppo.jsonl"
    run = train_ppo(_toy(), epochs=3, spec=SMALL, log_path=log, log_frequency=2)
    assert [line["epoch"] for line in _lines(log)] == [2.0]
    assert run.result.epoch == 3.0  # the last epoch is returned even when not logged


def test_rotation_and_append(tmp_path: Path) -> None:
    log = tmp_path / "ppo.jsonl"
    first = train_ppo(_toy(), epochs=3, spec=SMALL, log_path=log, max_log_entries=1)
    assert [line["epoch"] for line in _lines(log)] == [1.0]
    assert [line["epoch"] for line in _lines(tmp_path / "ppo.jsonl.1")] == [2.0]
    assert [line["epoch"] for line in _lines(tmp_path / "ppo.jsonl.2")] == [3.0]
    train_ppo(_toy(), epochs=2, state=first.state, log_path=log, max_log_entries=1)
    assert [line["log_stream_offset"] for line in _lines(log)] == [1.0, 4.0]
    assert [line["log_stream_offset"] for line in _lines(tmp_path / "ppo.jsonl.1")] == [2.0, 5.0]
    assert not (tmp_path / "ppo.jsonl.3").exists()


def test_base_log_created_even_when_nothing_is_logged(tmp_path: Path) -> None:
    log = tmp_path / "quiet.jsonl"
    train_ppo(_toy(), epochs=1, spec=SMALL, log_path=log, log_frequency=5)
    assert log.exists() and log.read_text() == ""


def test_bad_log_frequency_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="log_frequency"):
        train_ppo(_toy(), spec=SMALL, log_path=tmp_path / "x.jsonl", log_frequency=0)


# -- guards (spec §6.3) ------------------------------------------------------------------------


def _batch(rewards: list[float]) -> ReplayBatch:
    t = len(rewards)
    return ReplayBatch(
        maps=np.zeros((1, t, 2, 3, 3), np.float32),
        features=np.zeros((1, t, 4), np.float32),
        actions=np.zeros((1, t), np.int64),
        old_log_probs=np.full((1, t), -1.0, np.float32),
        value_preds=np.zeros((1, t + 1), np.float32),
        rewards=np.array([rewards], np.float32),
        dones=np.zeros((1, t), bool),
        metadata={"feature_names": FEATURE_NAMES},
    )


def test_nan_rewards_name_dataset_and_one_based_batch() -> None:
    state = init_ppo_state(SMALL, seed=0)
    info = PPODatasetInfo(label="nan_data")
    batches = [_batch([0.1, 0.2]), _batch([0.1, float("nan")])]
    with pytest.raises(ValueError, match=r"advantages.*NaN/inf") as caught:
        replay_epoch(state, batches, PPOConfig(), epoch_index=0, dataset_info=info)
    assert str(caught.value) == "PPO advantages contained NaN/inf (dataset=nan_data, batch=2)"
    assert isinstance(caught.value, TrainingFailedError)


def test_returns_checked_after_advantages_and_std() -> None:
    ones = torch.ones(3)
    bad_returns = PPOMinibatch(
        maps=None, features=torch.zeros(3, 4), actions=torch.zeros(3, dtype=torch.int64),
        old_log_probs=ones, advantages=ones, returns=torch.tensor([1.0, math.inf, 0.0]),
        old_values=ones,
    )  # fmt: skip
    with pytest.raises(
        NonFiniteTrainingError, match=r"^PPO returns contained NaN/inf \(dataset=d, batch=3\)$"
    ):
        _check_batch(bad_returns, "d", 3)
    both = attrs.evolve(bad_returns, advantages=torch.tensor([math.nan, 0.0, 0.0]))
    with pytest.raises(NonFiniteTrainingError, match="advantages contained"):
        _check_batch(both, "d", 1)


def test_empty_dataset_is_a_data_error() -> None:
    dataset = InMemoryReplayDataset([make_sample(3)], batch_size=2, drop_last=True)
    with pytest.raises(ReplayDataError, match="yielded no batches"):
        train_ppo(dataset, spec=SMALL)


def test_bad_epochs_and_state_with_init() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        train_ppo(_toy(), epochs=0)
    state = init_ppo_state(SMALL, seed=0)
    with pytest.raises(ConfigError, match="either state"):
        train_ppo(_toy(), state=state, init=state.params)


# -- initialisation ------------------------------------------------------------------------------


def test_action_dim_from_sidecar_then_max_action() -> None:
    plain = train_ppo(InMemoryReplayDataset([make_sample(4)]), epochs=1)
    assert plain.state.spec.action_dim == int(make_sample(4).actions.max()) + 1
    declared = make_sample(4, metadata={"action_dim": 6})
    run = train_ppo(InMemoryReplayDataset([declared]), epochs=1)
    assert run.state.spec.action_dim == 6
    assert run.state.spec.map_shape == (2, 3, 3) and run.state.spec.feature_dim == 4
    assert run.result.loss_entropy == pytest.approx(math.log(6), abs=0.01)


def test_checkpoint_spec_wins_and_misfit_is_refused(tmp_path: Path) -> None:
    big = NetworkSpec(map_shape=(2, 3, 3), feature_dim=4, action_dim=5, hidden_dim=8)
    path = save_checkpoint(tmp_path / "ck.pt", spec=big, params=init_params(big, 9))
    run = train_ppo(_toy(), init=path, epochs=1)
    assert run.state.spec == big
    narrow = NetworkSpec(map_shape=(2, 3, 3), feature_dim=5, action_dim=2, hidden_dim=8)
    bad = save_checkpoint(tmp_path / "bad.pt", spec=narrow, params=init_params(narrow, 9))
    with pytest.raises(CheckpointError, match=r"feature_dim 4 != 5; action id \d >= action_dim 2"):
        train_ppo(_toy(), init=bad)


def test_init_params_are_the_starting_point() -> None:
    params = init_params(SMALL, 42)
    from_params = train_ppo(_toy(), init=params, spec=SMALL, epochs=1, seed=0, clock=FIXED_CLOCK)
    from_seed = train_ppo(_toy(), spec=SMALL, epochs=1, seed=0, clock=FIXED_CLOCK)
    assert from_params.result.loss_total != from_seed.result.loss_total
    wrong = {k: v for k, v in params.items() if k != "value_head.bias"}
    with pytest.raises(CheckpointError, match="do not match"):
        train_ppo(_toy(), init=wrong, spec=SMALL)


def test_ppo_epoch_on_in_memory_batches_is_pure() -> None:
    dataset = _toy(batch_size=3)
    cfg = PPOConfig()
    state = init_ppo_state(SMALL, seed=0)
    prepared = prepare_batches(list(dataset.batches(0)), cfg, label="toy")
    snapshot = {k: v.clone() for k, v in state.params.items()}
    info = dataset_info(dataset)
    new_state, record = replay_epoch(
        state, prepared, cfg, epoch_index=0, dataset_info=info, clock=FIXED_CLOCK
    )
    _raw_state, raw_record = replay_epoch(
        state, list(dataset.batches(0)), cfg, epoch_index=0, dataset_info=info, clock=FIXED_CLOCK
    )
    assert record.to_dict() == raw_record.to_dict()
    with pytest.warns(DeprecationWarning, match="use replay_epoch"):
        _old_state, old_record = ppo_epoch(
            state, prepared, cfg, epoch_index=0, dataset_info=info, clock=FIXED_CLOCK
        )
    assert old_record.to_dict() == record.to_dict()
    assert all(torch.equal(snapshot[k], v) for k, v in state.params.items())
    assert (new_state.steps, new_state.log_stream_offset, state.steps) == (18, 1, 0)
    assert record.updates == 5  # N = 18: mbs = min(32, 18 // 4) = 4, ceil(18 / 4) = 5
