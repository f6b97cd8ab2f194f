"""``townlet-train anneal``: JSON output, files, --exit-on-failure and input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _replay_helpers import reference_root
from townlet.cli import main
from townlet.policy.rollout import capture_rollout, save_rollout
from townlet.world import WorldConfig

pytest.importorskip("torch")

SCHEDULE = """
seed = 1
[world]
num_agents = 3
[training]
anneal_accuracy_threshold = 0.2
anneal_loss_tolerance = {tolerance}
[training.bc]
epochs = 1
[[training.anneal_schedule]]
cycle = 0
mode = "bc"
[[training.anneal_schedule]]
cycle = 1
mode = "ppo"
bc_weight = 0.5
[[training.anneal_schedule]]
cycle = 2
mode = "ppo"
bc_weight = 0.0
"""


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("capture")
    save_rollout(capture_rollout(WorldConfig(num_agents=3), "scripted", 30, 0), out)
    return out


def _config(tmp_path: Path, tolerance: float = 1e9, text: str = SCHEDULE) -> Path:
    path = tmp_path / "anneal.toml"
    path.write_text(text.format(tolerance=tolerance))
    return path


def test_anneal_on_a_capture_dir_prints_status_promotion_results(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, capture: Path
) -> None:
    out = tmp_path / "run"
    code = main(
        ["anneal", "--config", str(_config(tmp_path)), "--capture-dir", str(capture),
         "--bc-manifest", str(capture / "rollout_sample_manifest.json"), "--out", str(out),
         "--quiet", "--exit-on-failure"]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    payload = json.loads(printed.out)
    assert payload["status"] == "PASS"
    assert [r["mode"] for r in payload["results"]] == ["bc", "ppo", "ppo"]
    assert (
        payload["promotion"]["pass_streak"] == 1 and payload["promotion"]["state"] == "monitoring"
    )
    assert payload["results"] == json.loads((out / "anneal_results.json").read_text())
    assert json.loads((out / "promotion.json").read_text())["pass_streak"] == 1
    assert len((out / "telemetry.jsonl").read_text().splitlines()) == 3  # 1 warm-up + 1 + 1
    assert json.loads((out / "anneal_summary.json").read_text()) == payload
    # PASS but one of two required passes: the decision on the written summary is HOLD.
    summary = str(out / "anneal_summary.json")
    assert main(["promote", "evaluate", "--summary", summary]) == 1
    assert json.loads(capsys.readouterr().out)["reasons"] == ["candidate_not_ready"]


def test_rollout_ticks_and_exit_on_failure(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, capture: Path
) -> None:
    argv = ["anneal", "--config", str(_config(tmp_path, tolerance=0.0)), "--rollout-ticks", "20",
            "--bc-manifest", str(capture / "rollout_sample_manifest.json"), "--quiet"]  # fmt: skip
    code = main([*argv, "--exit-on-failure"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1 and payload["status"] == "HOLD"
    assert payload["results"][2]["anneal_loss_flag"] is True
    assert main(argv) == 0  # without --exit-on-failure a HOLD still exits 0
    capsys.readouterr()


def test_input_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, capture: Path
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("seed = 0\n")
    assert main(["anneal", "--config", str(empty), "--capture-dir", str(capture)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "anneal_schedule is empty" in err
    assert main(["anneal", "--config", str(_config(tmp_path)), "--rollout-ticks", "0"]) == 2
    assert "--rollout-ticks must be >= 1" in capsys.readouterr().err
    assert main(["anneal", "--config", str(_config(tmp_path))]) == 2
    assert "BC manifest is required" in capsys.readouterr().err


def test_reference_acceptance_rehearsal_idle_v1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The reference's m5 acceptance config: BC (gate 0.8) then one PPO stage, both on idle_v1
    (one action, so BC is trivially exact); PASS, and with two required passes a HOLD decision
    with ``candidate_not_ready`` — as the reference's rehearsal reports."""
    root = reference_root()
    manifest = root / "data" / "bc_datasets" / "manifests" / "idle_v1.json"
    config = tmp_path / "config_idle_v1.yaml"
    config.write_text(
        "training:\n  anneal_accuracy_threshold: 0.8\n  anneal_schedule:\n"
        "    - {cycle: 0, mode: bc, epochs: 3, bc_weight: 1.0}\n"
        "    - {cycle: 1, mode: ppo, epochs: 1}\n"
    )
    out = tmp_path / "run"
    code = main(["anneal", "--config", str(config), "--bc-manifest", str(manifest),
                 "--manifest", str(manifest), "--root", str(root), "--out", str(out),
                 "--quiet"])  # fmt: skip
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and payload["status"] == "PASS"
    bc, ppo = payload["results"]
    assert (bc["accuracy"], bc["passed"], bc["threshold"], bc["rolled_back"]) == (
        1.0,
        True,
        0.8,
        False,
    )
    assert ppo["mode"] == "ppo" and ppo["anneal_loss_flag"] is False
    assert ppo["queue_conflict_events"] == 0.0  # disk replay data carries no social events
    assert main(["promote", "evaluate", "--summary", str(out / "anneal_summary.json")]) == 1
    decision = json.loads(capsys.readouterr().out)
    assert decision["decision"] == "HOLD" and decision["reasons"] == ["candidate_not_ready"]
