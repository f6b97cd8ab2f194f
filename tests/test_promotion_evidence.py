"""Promotion evidence is counted once: the same result read twice is not a second pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from townlet.cli import main
from townlet.errors import PromotionError
from townlet.policy.training.services.promotion import (
    evidence_counted,
    evidence_id,
    init_promotion_state,
    make_evidence,
    record_evaluation,
)
from townlet.policy.training.services.promotion_io import (
    load_promotion_state,
    promotion_state_from_dict,
    save_promotion_state,
)

RESULTS = [{"cycle": 1.0, "mode": "ppo"}]
EVIDENCE_A = make_evidence("hash-a", "run-1", [1000, 1001])
EVIDENCE_B = make_evidence("hash-b", "run-2", [1000, 1001])


def test_same_evidence_twice_does_not_advance_the_streak() -> None:
    one = record_evaluation(init_promotion_state(), "PASS", RESULTS, evidence=EVIDENCE_A)
    assert one.pass_streak == 1 and one.candidate is not None
    assert one.candidate["evidence_id"] == evidence_id(EVIDENCE_A)
    assert one.candidate["policy_hash"] == "hash-a" and one.candidate["eval_seeds"] == [1000, 1001]
    again = record_evaluation(one, "PASS", RESULTS, evidence=dict(reversed(EVIDENCE_A.items())))
    assert again.pass_streak == 1 and not again.candidate_ready
    assert again.evaluations == 2 and again.candidate == one.candidate
    two = record_evaluation(again, "PASS", RESULTS, evidence=EVIDENCE_B)
    assert two.pass_streak == 2 and two.candidate_ready and two.state == "ready"
    assert two.candidate is not None and two.candidate["policy_hash"] == "hash-b"


def test_each_part_of_the_evidence_makes_it_new() -> None:
    state = record_evaluation(init_promotion_state(), "PASS", RESULTS, evidence=EVIDENCE_A)
    for other in (
        make_evidence("hash-x", "run-1", [1000, 1001]),
        make_evidence("hash-a", "run-x", [1000, 1001]),
        make_evidence("hash-a", "run-1", [2000, 2001]),
    ):
        assert not evidence_counted(state, other)
    assert evidence_counted(state, EVIDENCE_A)


def test_repeated_evidence_does_not_reset_a_streak_either() -> None:
    state = record_evaluation(init_promotion_state(), "HOLD", RESULTS, evidence=EVIDENCE_A)
    state = record_evaluation(state, "PASS", RESULTS, evidence=EVIDENCE_B)
    state = record_evaluation(state, "HOLD", RESULTS, evidence=EVIDENCE_A)  # old news
    assert state.pass_streak == 1 and state.last_result == "pass"


def test_without_evidence_every_record_counts_as_before() -> None:
    state = record_evaluation(init_promotion_state(), "PASS", RESULTS)
    state = record_evaluation(state, "PASS", RESULTS)
    assert state.pass_streak == 2 and state.counted_evidence == ()


def test_counted_evidence_survives_the_file(tmp_path: Path) -> None:
    state = record_evaluation(init_promotion_state(), "PASS", RESULTS, evidence=EVIDENCE_A)
    path = save_promotion_state(tmp_path / "promotion.json", state)
    loaded = load_promotion_state(path)
    assert loaded == state and evidence_counted(loaded, EVIDENCE_A)
    with pytest.raises(PromotionError, match="field 'counted_evidence': expected a list"):
        promotion_state_from_dict({"counted_evidence": [1]}, source="p.json")


def test_rerunning_a_finished_pass_directory_is_not_a_second_pass(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from townlet.policy.rollout import capture_rollout
    from townlet.world import WorldConfig

    capture = tmp_path / "cap"
    capture_rollout(WorldConfig(num_agents=3), "scripted", 30, 0).save(capture)
    config = tmp_path / "anneal.toml"
    config.write_text(
        "[world]\nnum_agents = 3\n[training]\nanneal_accuracy_threshold = 0.1\n"
        "anneal_loss_tolerance = 1e9\n[promotion]\nrequired_passes = 2\n[training.bc]\n"
        "epochs = 1\n[[training.anneal_schedule]]\ncycle = 0\nmode = 'bc'\n"
        "[[training.anneal_schedule]]\ncycle = 1\nmode = 'ppo'\nbc_weight = 0.5\n"
    )
    out = tmp_path / "run"
    manifest = str(capture / "rollout_sample_manifest.json")
    argv = ["anneal", "--config", str(config), "--capture-dir", str(capture), "--quiet",
            "--bc-manifest", manifest, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)["promotion"]
    assert first["pass_streak"] == 1 and first["candidate"]["run_fingerprint"]
    assert main(argv) == 0  # resumes the finished run: nothing new was learned or evaluated
    second = json.loads(capsys.readouterr().out)["promotion"]
    assert second["pass_streak"] == 1 and second["candidate_ready"] is False
    assert second["evaluations"] == 2
    checkpoint = str(out / "checkpoint.pt")
    assert main(["promote", "promote", "--run", str(out), "--checkpoint", checkpoint]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "promotion_not_ready"
    summary = str(out / "anneal_summary.json")
    assert main(["promote", "record", "--run", str(out), "--summary", summary]) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert recorded["counted"] is False and recorded["promotion"]["pass_streak"] == 1


def test_promote_record_counts_a_summary_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"status": "PASS", "results": [{"cycle": 0, "mode": "ppo"}]}))
    argv = ["promote", "record", "--run", str(tmp_path), "--summary", str(summary)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["counted"] is True
    assert main([*argv, "--format", "human"]) == 0
    assert "evidence already counted" in capsys.readouterr().out
    summary.write_text(json.dumps({"status": "PASS", "results": [{"cycle": 1, "mode": "ppo"}]}))
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["promotion"]["pass_streak"] == 2
