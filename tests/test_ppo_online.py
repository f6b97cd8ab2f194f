"""Online PPO on Gymnasium: learning, determinism, the truncation bootstrap, the update fold,
threads, telemetry; ``townlet-train ppo --env`` and ``townlet-train evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from townlet.cli import main
from townlet.config import PPOConfig
from townlet.dto.telemetry import read_telemetry
from townlet.dto.telemetry_validate import validate_telemetry
from townlet.errors import ConfigError, RolloutError

torch = pytest.importorskip("torch")
pytest.importorskip("gymnasium")

from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.training.strategies.ppo.collect import (  # noqa: E402
    Trajectory,
    rollout_advantages,
    rollout_batch,
)
from townlet.policy.training.strategies.ppo.epoch import shuffle_rows, split_rows  # noqa: E402
from townlet.policy.training.strategies.ppo.online import (  # noqa: E402
    gym_env_id,
    torch_threads,
    train_ppo_online,
)
from townlet.policy.training.strategies.ppo.online_step import (  # noqa: E402
    ppo_update,
)
from townlet.policy.training.strategies.ppo.step import init_ppo_state  # noqa: E402

FAST = PPOConfig(
    learning_rate=2.5e-3,
    num_epochs=4,
    mini_batch_size=64,
    num_mini_batches=1,
    entropy_coef=0.0,
    value_clip=0.0,
)
TINY = attrs.evolve(FAST, num_epochs=2)


def _without_durations(record: Any) -> dict[str, Any]:
    data = record.to_dict()
    data.pop("epoch_duration_sec")
    return dict(data)


def test_cartpole_return_improves_over_the_initial_policy() -> None:
    run = train_ppo_online("gymnasium:CartPole-v1", 4 * 1024, 8, 128, FAST, 0)
    returns = [h.episode_return_mean for h in run.history]
    assert len(run.history) == 4 and run.env_steps == 4096
    # The first update's episodes were played by the initial parameters.
    assert returns[0] is not None and returns[-1] is not None
    assert returns[-1] > 2.0 * returns[0], returns
    assert len(run.episode_returns) == len(run.episode_lengths) > 0
    assert run.state.steps == 4096 and run.state.updates == 4 * 4 * 16


def test_same_seed_same_telemetry_other_seed_differs() -> None:
    def history(seed: int) -> list[dict[str, Any]]:
        run = train_ppo_online("CartPole-v1", 512, 4, 64, TINY, seed)
        return [_without_durations(h) for h in run.history]

    first = history(3)
    assert first == history(3)
    assert first != history(4)


def test_records_are_valid_telemetry_with_episode_keys(tmp_path: Path) -> None:
    log = tmp_path / "online.jsonl"
    run = train_ppo_online("CartPole-v1", 512, 4, 64, TINY, 0, log_path=log)
    assert len(run.history) == 2
    assert validate_telemetry(log).ok
    records = read_telemetry(log)
    assert [r.epoch for r in records] == [1.0, 2.0]
    first = records[0]
    assert first.data_mode == "rollout" and first.rollout_ticks == 64.0
    assert first.steps == 256.0 and first.cycle_id == 0.0
    assert first.updates == 4 * 2  # 256 rows / 64 per minibatch, 2 passes
    assert first.episode_return_mean is not None and first.episode_return_mean > 0
    assert first.episode_length_mean == first.episode_return_mean  # CartPole: +1 per step
    assert first.extras["conflict.rivalry_max_mean_avg"] == 0.0


def test_threads_are_restored() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="total_steps must be an integer >= 1"):
        train_ppo_online("CartPole-v1", 0)
    with pytest.raises(ConfigError, match="num_envs"):
        train_ppo_online("CartPole-v1", 10, num_envs=0)
    with pytest.raises(RolloutError, match="unknown Gymnasium environment"):
        train_ppo_online("gymnasium:NoSuchEnv-v0", 10)
    with pytest.raises(RolloutError, match="Discrete"):
        train_ppo_online("gymnasium:Pendulum-v1", 10)
    assert gym_env_id("gymnasium:CartPole-v1") == gym_env_id("CartPole-v1") == "CartPole-v1"
    with pytest.raises(ConfigError):
        gym_env_id("gymnasium:")


def _trajectory(
    rewards: list[float], dones: list[bool], boot: list[float], values: list[float]
) -> Trajectory:
    t = len(rewards)
    return Trajectory(
        observations=torch.zeros(t, 1, 2),
        actions=torch.zeros(t, 1, dtype=torch.int64),
        log_probs=torch.zeros(t, 1),
        values=torch.tensor(values).reshape(t + 1, 1),
        rewards=np.array(rewards, dtype=np.float32).reshape(t, 1),
        dones=np.array(dones).reshape(t, 1),
        bootstrap=np.array(boot, dtype=np.float32).reshape(t, 1),
        episode_returns=(),
        episode_lengths=(),
    )


def test_gae_bootstraps_a_truncated_episode_by_hand() -> None:
    cfg = PPOConfig(gamma=0.5, gae_lambda=0.5)
    # Step 1 is truncated with V(s_final) = 4; V(s_2) = 100 belongs to the next episode.
    traj = _trajectory([1.0, 1.0], [False, True], [0.0, 4.0], [2.0, 3.0, 100.0])
    adv, ret = rollout_advantages(traj, cfg)
    delta1 = 1.0 + 0.5 * 4.0 - 3.0  # 0.0: bootstrapped, the next episode's value unused
    delta0 = 1.0 + 0.5 * 3.0 - 2.0  # 0.5
    expected = [delta0 + 0.25 * delta1, delta1]
    assert adv[:, 0].tolist() == pytest.approx(expected)
    assert ret[:, 0].tolist() == pytest.approx([expected[0] + 2.0, expected[1] + 3.0])
    # Terminated (no bootstrap): the target is the reward alone.
    adv_t, _ = rollout_advantages(
        _trajectory([1.0, 1.0], [False, True], [0.0, 0.0], [2.0, 3.0, 100.0]), cfg
    )
    assert adv_t[1, 0].item() == pytest.approx(1.0 - 3.0)


def test_rollout_batch_normalises_and_flattens() -> None:
    traj = _trajectory([1.0, 0.0, 2.0], [False, False, False], [0.0] * 3, [0.5, 1.0, 0.0, 0.2])
    data, facts = rollout_batch(traj, PPOConfig())
    assert len(data) == 3 and facts.transitions == 3
    assert data.advantages.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert data.old_values.tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_shuffled_split_rows_cover_every_row_once() -> None:
    traj = _trajectory([float(i) for i in range(10)], [False] * 10, [0.0] * 10, [0.0] * 11)
    data, _ = rollout_batch(traj, PPOConfig(advantage_normalization=False))
    gen = torch.Generator().manual_seed(0)
    parts = split_rows(shuffle_rows(data, gen), 4)
    assert [len(p) for p in parts] == [4, 4, 2]
    returns = sorted(v for p in parts for v in p.returns.tolist())
    assert returns == pytest.approx(sorted(data.returns.tolist()))


def test_ppo_update_leaves_inputs_unchanged_and_counts_updates() -> None:
    spec = NetworkSpec(feature_dim=2, action_dim=2, hidden_dim=8, critic="separate")
    state = init_ppo_state(spec, seed=0)
    traj = _trajectory([1.0, 0.0, 2.0, 1.0], [False] * 4, [0.0] * 4, [0.1, 0.2, 0.3, 0.4, 0.5])
    traj = attrs.evolve(traj, observations=torch.randn(4, 1, 2, generator=torch.Generator()))
    data, _ = rollout_batch(traj, PPOConfig())
    before = {k: v.clone() for k, v in state.params.items()}
    cfg = PPOConfig(num_epochs=3, mini_batch_size=2, num_mini_batches=2)
    new, stats = ppo_update(state, data, cfg, update=1)
    assert new.updates == 6 and len(stats) == 6 and all(s.transitions == 2 for s in stats)
    assert all(torch.equal(before[k], state.params[k]) for k in before)
    assert any(not torch.equal(before[k], new.params[k]) for k in before)
    again, _ = ppo_update(state, data, cfg, update=1)
    assert all(torch.equal(again.params[k], new.params[k]) for k in before)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else out.out, out.err


def test_cli_ppo_env_writes_outputs_and_evaluate_reads_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, summary, err = _cli(
        capsys, "ppo", "--env", "gymnasium:CartPole-v1", "--total-steps", "512",
        "--num-envs", "4", "--rollout-steps", "64", "--ppo-num-epochs", "2",
        "--ppo-mini-batch-size", "128", "--ppo-num-mini-batches", "1", "--hidden", "16",
        "--eval-episodes", "3", "--seed", "1", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert summary["env_steps"] == 512 and summary["updates"] == 2
    assert summary["eval_episodes"] == 3 and summary["network"]["hidden_dim"] == 16
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary
    assert {"eval_return_mean", "eval_return_std", "wall_seconds", "env_steps"} <= set(saved)
    assert validate_telemetry(out / "telemetry.jsonl").ok
    args = ("evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--env",
            "gymnasium:CartPole-v1", "--episodes", "3", "--seed", "1")  # fmt: skip
    code, first, err = _cli(capsys, *args)
    assert code == 0, err
    assert first["mean"] == pytest.approx(summary["eval_return_mean"])
    assert _cli(capsys, *args)[1] == first  # deterministic for a seed
    code, sampled, _ = _cli(capsys, *args, "--sample")
    assert code == 0 and sampled["deterministic"] is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--env", "gymnasium:NoSuchEnv-v0", "--total-steps", "10"), "unknown Gymnasium"),
        (("--env", "gymnasium:Pendulum-v1", "--total-steps", "10"), "Discrete"),
        (("--env", "gymnasium:CartPole-v1", "--total-steps", "0"), "--total-steps must be >= 1"),
        (("--env", "gymnasium:CartPole-v1"), "--env needs --total-steps"),
        (("--env", "CartPole-v1", "--total-steps", "8", "--epochs", "2"), "--ppo-num-epochs"),
        (("--env", "CartPole-v1", "--total-steps", "8", "--num-envs", "0"), "--num-envs"),
        (("--env", "CartPole-v1", "--total-steps", "8", "--init", "nope.pt"), "--init must be"),
    ],
)
def test_cli_ppo_env_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, out, err = _cli(capsys, "ppo", *argv, "--quiet")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_evaluate_bad_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _cli(
        capsys, "evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--env", "town"
    )
    assert code == 2 and "checkpoint file not found" in err
    code, _, err = _cli(
        capsys, "evaluate", "--checkpoint", "x.pt", "--env", "town", "--episodes", "0"
    )
    assert code == 2 and "--episodes must be >= 1" in err


def test_separate_critic_network(tmp_path: Path) -> None:
    from townlet.policy.nn.checkpoint import load_checkpoint, save_checkpoint
    from townlet.policy.nn.network import apply, init_params, param_shapes, value_keys
    from townlet.policy.nn.spec import spec_from_dict

    shared = NetworkSpec(feature_dim=3, action_dim=2, hidden_dim=4)
    separate = attrs.evolve(shared, critic="separate")
    assert "critic" not in shared.to_dict()  # older readers keep loading shared specs
    assert spec_from_dict(separate.to_dict()) == separate
    shapes = param_shapes(separate)
    assert shapes["critic.feature_encoder.0.weight"] == (4, 3)
    assert shapes["critic.shared.0.weight"] == (4, 4)
    assert set(value_keys(separate)) == {
        "value_head.weight", "value_head.bias", "critic.feature_encoder.0.weight",
        "critic.feature_encoder.0.bias", "critic.shared.0.weight", "critic.shared.0.bias",
    }  # fmt: skip
    # The shared layers draw the same numbers as the shared network's.
    a, b = init_params(shared, 5), init_params(separate, 5)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    logits_a, values_a = apply(a, None, x, spec=shared)
    logits_b, values_b = apply(b, None, x, spec=separate)
    assert torch.equal(logits_a, logits_b) and not torch.equal(values_a, values_b)
    # The value depends on the critic trunk only: perturbing the actor trunk leaves it.
    moved = {**b, "shared.0.bias": b["shared.0.bias"] + 1.0}
    assert torch.equal(apply(moved, None, x, spec=separate)[1], values_b)
    path = save_checkpoint(tmp_path / "c.pt", spec=separate, params=b)
    assert load_checkpoint(path).spec == separate


def test_validator_accepts_episode_keys_and_checks_them() -> None:
    from townlet.dto.telemetry import telemetry_line
    from townlet.dto.telemetry_validate import validate_record

    run = train_ppo_online("CartPole-v1", 256, 4, 64, TINY, 0)
    line = telemetry_line(run.history[0])
    assert line["telemetry_version"] == 1.3  # the episode keys are extensions
    assert "episode_return_mean" in line and validate_record(line) == []
    assert validate_record({k: v for k, v in line.items() if not k.startswith("episode_")}) == []
    bad = {**line, "episode_length_mean": "long"}
    assert validate_record(bad) == [
        "Field 'episode_length_mean' must be a finite number, got 'long'"
    ]


def test_init_from_a_checkpoint_or_parameters(tmp_path: Path) -> None:
    from townlet.errors import CheckpointError
    from townlet.policy.nn.checkpoint import save_checkpoint

    first = train_ppo_online("CartPole-v1", 256, 4, 64, TINY, 0, hidden_dim=16, critic="shared")
    path = save_checkpoint(tmp_path / "start.pt", spec=first.spec, params=first.params)
    # A checkpoint's network wins over hidden_dim/critic.
    again = train_ppo_online("CartPole-v1", 256, 4, 64, TINY, 1, init=path)
    assert again.spec == first.spec and again.spec.hidden_dim == 16
    # Bare parameters must fit the requested network.
    with pytest.raises(CheckpointError, match="do not match"):
        train_ppo_online("CartPole-v1", 256, 4, 64, TINY, 1, init=first.params)
    fitted = train_ppo_online(
        "CartPole-v1", 256, 4, 64, TINY, 1, init=first.params, hidden_dim=16, critic="shared"
    )
    assert fitted.history[0].episode_return_mean == pytest.approx(
        again.history[0].episode_return_mean
    )


def test_log_frequency_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "sampled.jsonl"
    train_ppo_online(
        "CartPole-v1", 3 * 64, 1, 64, TINY, 0, log_path=log, log_frequency=1, max_log_entries=2
    )
    assert [r.epoch for r in read_telemetry(log)] == [1.0, 2.0]
    assert [r.epoch for r in read_telemetry(tmp_path / "sampled.jsonl.1")] == [3.0]
    every_other = tmp_path / "every_other.jsonl"
    train_ppo_online("CartPole-v1", 3 * 64, 1, 64, TINY, 0, log_path=every_other, log_frequency=2)
    assert [r.epoch for r in read_telemetry(every_other)] == [2.0]


def test_online_training_is_exported_from_the_package() -> None:
    import townlet
    from townlet.policy.training.strategies.ppo import online as ppo_online

    assert townlet.train_ppo_online is ppo_online.train_ppo_online
    assert townlet.OnlineTrainResult is ppo_online.OnlineTrainResult


def test_online_settings_record_equals_the_separate_arguments() -> None:
    from townlet.policy.training.strategies.ppo.online import OnlinePPOConfig

    settings = OnlinePPOConfig(total_steps=128, num_envs=2, rollout_steps=32, hidden_dim=16)
    assert settings.updates == 2
    by_record = train_ppo_online("CartPole-v1", cfg=TINY, seed=0, online=settings)
    by_args = train_ppo_online("CartPole-v1", 128, 2, 32, TINY, 0, hidden_dim=16)
    assert [r.to_dict() | {"epoch_duration_sec": 0} for r in by_record.history] == [
        r.to_dict() | {"epoch_duration_sec": 0} for r in by_args.history
    ]
    with pytest.raises(ConfigError, match="not both"):
        train_ppo_online("CartPole-v1", 128, online=settings)
    with pytest.raises(ConfigError, match="num_envs must be an integer >= 1"):
        OnlinePPOConfig(total_steps=1, num_envs=0)
    with pytest.raises(TypeError, match="hidden"):
        train_ppo_online("CartPole-v1", 128, hidden=3)
