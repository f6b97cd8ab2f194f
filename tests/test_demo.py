"""The demo (main job) at a tiny size: files written, summary content, human output, CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from townlet.cli import main
from townlet.dto.telemetry_validate import validate_telemetry
from townlet.policy.training import demo

TINY = demo.DemoSettings(
    agents=3,
    demo_ticks=60,
    bc_epochs=3,
    bc_patience=2,
    cycles=2,
    ppo_epochs=1,
    rollout_ticks=30,
    critic_warmup_epochs=1,
    eval_episodes=3,
    eval_ticks=30,
    bc_threshold=0.1,
)
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


@pytest.mark.slow  # ~6 s: the first matplotlib figure of the process dominates
def test_demo_writes_every_file_and_a_consistent_summary(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = demo.run_demo(tmp_path, seed=2, settings=TINY, quiet=True, plot=HAS_MPL,
                            report=lines.append)  # fmt: skip
    for name in ("summary.json", "telemetry.jsonl", "anneal_results.json", "promotion.json",
                 "anneal_summary.json", "checkpoint.pt", "bc_checkpoint.pt",
                 "run_fingerprint.json"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "training.png").is_file() == HAS_MPL
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "stage_001.pt", "stage_002.pt",
    ]  # fmt: skip
    assert (tmp_path / "demos" / "rollout_sample_manifest.json").is_file()
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    returns = summary["returns"]
    assert returns["improvement"] == pytest.approx(returns["final_mean"] - returns["bc_mean"])
    assert returns["episodes"] == 3 and returns["episode_ticks"] == 30
    assert returns["mode"] == "sampled" and returns["greedy"] is False
    assert returns["behaviour_gate"] == returns["final_vs_bc"]
    gap = [f - b for f, b in zip(returns["final_returns"], returns["bc_returns"], strict=True)]
    assert returns["final_vs_bc"]["mean_difference"] == pytest.approx(sum(gap) / 3)
    for name in ("random", "bc", "final", "scripted"):
        low, high = returns[f"{name}_ci95"]
        assert low <= returns[f"{name}_mean"] <= high
    assert summary["bc"]["best_epoch"] <= summary["bc"]["epochs"] <= 3
    assert summary["anneal"]["stages"] == 2 and len(summary["rollout_returns"]) == 2
    assert summary["promotion"]["decision"] in ("PROMOTE", "HOLD", "FAIL")
    assert validate_telemetry(tmp_path / "telemetry.jsonl").ok
    assert lines[0].startswith("captured 180 expert frames (3 agents); BC plateau at epoch")
    assert lines[1].startswith("guardrail reference (BC's own 30-tick rollout)")
    assert lines[2].startswith("cycle 1 ppo")
    baselines = summary["guardrails"]["baselines"]
    assert "reference_queue_conflict_events" in baselines
    history = json.loads((tmp_path / "promotion.json").read_text())["history"]
    assert any(event["event"] == "behaviour_gate" for event in history)


def test_demo_cli_prints_the_human_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "QUICK", TINY)
    argv = ["demo", "--quick", "--out", str(tmp_path), "--seed", "1", "--quiet"]
    assert main([*argv, *([] if HAS_MPL else ["--no-plot"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"townlet demo -> {tmp_path} (seed 1,")
    assert "BC->PPO vs BC:" in out and "promotion:" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert f"BC {summary['returns']['bc_mean']:.1f}" in out


def test_demo_cli_rejects_a_negative_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seed", "-1"]) == 2
    assert "--seed must be >= 0" in capsys.readouterr().err


def test_reasons_are_grouped_by_kind() -> None:
    from townlet.cli.demo_cmd import _reasons

    reasons = ["queue_flag_cycle_2.0", "loss_flag_cycle_5.0", "queue_flag_cycle_7.0",
               "behaviour_gate_failed"]  # fmt: skip
    assert (
        _reasons(reasons)
        == " (queue flag: cycles 2, 7; loss flag: cycles 5; behaviour gate failed)"
    )
    assert _reasons([]) == ""


def test_demo_without_matplotlib_exits_2_with_the_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from townlet.policy.training import demo_plot

    def missing() -> None:
        raise ImportError(demo_plot.PLOT_HINT)

    monkeypatch.setattr(demo_plot, "require_matplotlib", missing)
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "pip install 'townlet[plot]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
