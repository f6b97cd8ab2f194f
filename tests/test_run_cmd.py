"""``townlet-train run``: the reference's run_training.py flags over townlet.compat."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from townlet.cli import main
from townlet.cli.run_cmd import ppo_overrides


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text("seed = 1\n[world]\nnum_agents = 3\n[training]\nrollout_ticks = 6\n")
    return path


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rollout_then_mixed_then_replay_summary(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap, log = tmp_path / "cap", tmp_path / "ppo.jsonl"
    args = ["run", str(config), "--mode", "rollout", "--rollout-save-dir", str(cap)]
    assert main([*args, "--ppo-log", str(log), "--replay-batch-size", "3"]) == 0
    assert capsys.readouterr().out.startswith("PPO epoch 1: {")
    assert [line["data_mode"] for line in _lines(log)] == ["rollout"]
    manifest = cap / "rollout_sample_manifest.json"
    mixed = tmp_path / "mixed.jsonl"
    args = ["run", str(config), "--mode", "mixed", "--replay-manifest", str(manifest)]
    assert main([*args, "--ppo-log", str(mixed), "--epochs", "2"]) == 0
    assert [line["data_mode"] for line in _lines(mixed)] == ["replay"] * 2 + ["rollout"] * 2
    capsys.readouterr()
    assert main(["run", str(config), "--replay-manifest", str(manifest)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("Replay batch 1: {'batch': 1.0")


def test_ppo_overrides_reach_the_run(config: Path, tmp_path: Path) -> None:
    log = tmp_path / "ppo.jsonl"
    args = ["run", str(config), "--rollout-ticks", "4", "--ppo-learning-rate", "0.002"]
    assert main([*args, "--ppo-log", str(log)]) == 0  # auto-switch: replay -> rollout
    assert _lines(log)[0]["lr"] == 0.002
    namespace = argparse.Namespace(
        **{f"ppo_{n}": None for n in ("learning_rate", "clip_param", "value_loss_coef")},
        **{f"ppo_{n}": None for n in ("entropy_coef", "gae_lambda", "gamma", "max_grad_norm")},
        **{f"ppo_{n}": None for n in ("value_clip", "num_epochs", "num_mini_batches")},
        ppo_mini_batch_size=8,
        ppo_normalize=False,
    )
    assert ppo_overrides(namespace) == {"mini_batch_size": 8, "advantage_normalization": False}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode", "rollout", "--capture-dir", "x"], "expect live capture; remove --capture-dir"),
        (["--capture-dir", "x", "--replay-manifest", "y"], "either --capture-dir or"),
        (["--mode", "rollout", "--rollout-ticks", "0"], "rollout_ticks must be positive"),
        (["--mode", "replay", "--train-ppo"], "Replay mode requires replay dataset via"),
        ([], "Training mode 'replay' is not supported via run()"),
        (["--mode", "bc"], "BC manifest is required"),
    ],
)
def test_bad_usage_exits_2_with_the_reference_message(
    config: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(config), *extra]) == 2
    assert message in capsys.readouterr().err
