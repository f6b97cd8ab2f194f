"""``townlet-train capture``: town and Gymnasium captures, JSON summary, bad input → exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from townlet.cli import main
from townlet.policy.replay import ReplayDataset, ReplayDatasetConfig


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["capture", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_town_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "cap"
    code, out, err = _run(
        ["--agents", "3", "--ticks", "40", "--seed", "2", "--social-stage", "C1",
         "--out", str(out_dir), "--quiet"],
        capsys,
    )  # fmt: skip
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert summary["frames"] == 120 and summary["agents"] == 3 and summary["samples"] == 3
    assert summary["social_stage"] == "C1" and summary["seed"] == 2
    assert summary["out"] == str(out_dir) and "queue_conflict_events" in summary["events"]
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(out_dir))
    assert dataset.num_samples == 3


def test_config_supplies_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text("seed = 5\n[training]\nrollout_ticks = 7\n[world]\nnum_agents = 2\n")
    code, out, _ = _run(["--config", str(config), "--out", str(tmp_path / "o")], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["frames"] == 14 and summary["seed"] == 5


def test_gymnasium_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gymnasium")
    code, out, _ = _run(
        ["--env", "gymnasium:CartPole-v1", "--agents", "2", "--ticks", "50",
         "--policy", "random", "--out", str(tmp_path / "cp"), "--no-compress"],
        capsys,
    )  # fmt: skip
    summary = json.loads(out)
    assert code == 0 and summary["source"] == "gymnasium:CartPole-v1"
    assert summary["frames"] == 100 and summary["episodes"] >= 1
    assert summary["mean_episode_return"] > 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ticks", "0"], "ticks must be positive to capture a rollout, got 0"),
        (["--agents", "0"], "agents must be >= 1"),
        (["--env", "mujoco"], "--env must be 'town' or 'gymnasium:<id>'"),
        (["--env", "gymnasium:NoSuch-v0", "--policy", "random"], "unknown Gymnasium environment"),
        (["--env", "gymnasium:Pendulum-v1", "--policy", "random"], "spaces.Discrete"),
        (["--env", "gymnasium:CartPole-v1", "--policy", "scripted"],
         "--policy scripted needs --env town"),
        (["--env", "gymnasium:CartPole-v1", "--policy", "random", "--social-stage", "C1"],
         "--social-stage applies to --env town only"),
        (["--policy", "missing.pt"], "'missing.pt' is none of these"),
    ],
)  # fmt: skip
def test_bad_input_exits_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("gymnasium")
    code, out, err = _run([*argv, "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and err.startswith("townlet-train capture:")
    assert not (tmp_path / "x").exists()


def test_help_lists_capture(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["capture", "--help"])
    assert "--social-stage" in capsys.readouterr().out


def test_replay_cli_reads_a_gymnasium_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("gymnasium")
    out_dir = tmp_path / "cp"
    _run(["--env", "gymnasium:CartPole-v1", "--agents", "2", "--ticks", "20",
          "--policy", "random", "--out", str(out_dir)], capsys)  # fmt: skip
    assert main(["replay", "--capture-dir", str(out_dir)]) == 2
    assert "conflict feature" in capsys.readouterr().err
    assert main(["replay", "--capture-dir", str(out_dir), "--no-conflict-features"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 2


def test_gymnasium_defaults_to_random_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("gymnasium")
    argv = ["--env", "gymnasium:CartPole-v1", "--ticks", "20", "--out", str(tmp_path / "cp")]
    code, out, _ = _run(argv, capsys)
    assert code == 0
    assert '"policy": "random"' in out
