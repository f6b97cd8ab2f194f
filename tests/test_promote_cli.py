"""``townlet-train promote``: exit codes, dry run, human format, and the run-directory workflow."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from townlet.cli import main
from townlet.policy.training.services.promotion_io import load_promotion_state

BC_OK = {"cycle": 0.0, "mode": "bc", "passed": True, "accuracy": 0.95, "threshold": 0.9}
PPO_QUEUE = {"cycle": 1, "mode": "ppo", "anneal_queue_flag": True}
BLOCK = {"pass_streak": 1, "required_passes": 2, "candidate_ready": False, "last_result": "pass"}


def write(tmp_path: Path, payload: Any, name: str = "summary.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["promote", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("payload", "decision", "code", "reasons"),
    [
        (
            {"status": "PASS", "results": [BC_OK], "promotion": {**BLOCK, "candidate_ready": True}},
            "PROMOTE",
            0,
            [],
        ),
        (
            {"status": "PASS", "results": [BC_OK], "promotion": BLOCK},
            "HOLD",
            1,
            ["candidate_not_ready"],
        ),
        ({"status": "HOLD", "results": [BC_OK, PPO_QUEUE]}, "HOLD", 1, ["queue_flag_cycle_1"]),
        (
            {"results": [{"cycle": 2, "mode": "bc", "passed": False}]},
            "FAIL",
            2,
            ["bc_stage_failed_cycle_2"],
        ),
        # Simple BC-only mode.
        ({"bc_accuracy": 0.95, "bc_threshold": 0.9}, "PROMOTE", 0, []),
        ({"bc_accuracy": 0.8, "bc_threshold": 0.9}, "HOLD", 1, ["bc_stage_failed_cycle_0"]),
    ],
)
def test_evaluate_exit_codes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    payload: dict[str, Any],
    decision: str,
    code: int,
    reasons: list[str],
) -> None:
    summary = write(tmp_path, payload)
    got, out, _ = run(capsys, "evaluate", "--summary", summary)
    assert got == code
    data = json.loads(out)
    assert data["decision"] == decision and data["reasons"] == reasons
    assert list(data) == [
        "status",
        "decision",
        "candidate_ready",
        "promotion",
        "results",
        "reasons",
    ]
    assert run(capsys, "evaluate", "--summary", summary, "--dry-run")[0] == 0


def test_evaluate_derives_status_from_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = write(tmp_path, {"results": [BC_OK, PPO_QUEUE]})
    code, out, _ = run(capsys, "evaluate", "--input", summary)
    assert code == 1 and json.loads(out)["status"] == "hold"


def test_evaluate_human_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = {"status": "PASS", "results": [BC_OK, PPO_QUEUE], "promotion": BLOCK}
    code, out, _ = run(
        capsys, "evaluate", "--summary", write(tmp_path, payload), "--format", "human"
    )
    assert code == 1
    lines = out.splitlines()
    assert lines[:4] == [
        "Decision: HOLD",
        "Status:   pass",
        "Ready?:   no",
        "Pass streak: 1/2 (last result: pass)",
    ]
    assert "passed (accuracy 0.950, threshold 0.900)" in lines[5]
    assert lines[6].split() == ["1", "ppo", "flags:", "queue"]
    assert lines[-3:] == ["Reasons:", "  - queue_flag_cycle_1", "  - candidate_not_ready"]


def test_evaluate_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        "sys.stdin", io.StringIO(json.dumps({"bc_accuracy": 1, "bc_threshold": 0.9}))
    )
    assert run(capsys, "evaluate", "--summary", "-")[0] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read summary"),
        ("", "the summary is empty"),
        ("{oops", "summary is not valid JSON"),
        ("[1, 2]", "the summary must be a JSON object"),
        ('{"bc_accuracy": 0.5}', "field 'bc_threshold': expected a number"),
        ('{"results": [1]}', "field 'results[0]': expected an object"),
    ],
)
def test_evaluate_unreadable_summary_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "summary.json"
    if content is not None:
        path.write_text(content)
    for extra in ((), ("--dry-run",)):
        code, out, err = run(capsys, "evaluate", "--summary", str(path), *extra)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and message in err and str(path) in err


# --- the run-directory workflow ------------------------------------------------------------------


def test_record_promote_gate_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ckpt = tmp_path / "policy.pt"
    ckpt.write_bytes(b"weights")
    summary = write(tmp_path, {"status": "PASS", "results": [BC_OK, {"cycle": 1.0, "mode": "ppo"}]})
    d = str(run_dir)

    code, out, _ = run(capsys, "record", "--run", d, "--summary", summary)
    assert code == 0 and json.loads(out)["promotion"]["pass_streak"] == 1
    # Not ready yet: promote refuses with exit 1 and leaves the state alone.
    code, out, _ = run(capsys, "promote", "--run", d, "--checkpoint", str(ckpt))
    assert code == 1 and json.loads(out)["error"] == "promotion_not_ready"

    run(capsys, "record", "--run", d, "--summary", summary)  # the same evidence: not counted
    code, out, _ = run(capsys, "status", "--run", d, "--format", "human")
    assert code == 0 and "Pass streak:     1/2" in out
    second = write(
        tmp_path, {"status": "PASS", "results": [BC_OK, {"cycle": 2.0, "mode": "ppo"}]}, "s2.json"
    )
    run(capsys, "record", "--run", d, "--summary", second)  # a new run's summary: a new pass
    code, out, _ = run(capsys, "status", "--run", d, "--format", "human")
    assert code == 0 and "State:           ready" in out and "Pass streak:     2/2" in out

    code, out, _ = run(capsys, "promote", "--run", d, "--checkpoint", str(ckpt))
    assert code == 0
    release = json.loads(out)["promotion"]["current_release"]
    assert release["checkpoint"] == str(ckpt.resolve())
    assert release["policy_hash"] == hashlib.sha256(b"weights").hexdigest()

    good = write(tmp_path, [1.0, 2.0, 3.0], "cand.json")
    code, out, _ = run(
        capsys,
        "gate",
        "--run",
        d,
        "--candidate-returns",
        good,
        "--incumbent-returns",
        good,
        "--margin",
        "0",
        "--min-episodes",
        "3",
    )
    assert code == 0 and json.loads(out)["behaviour_gate"]["passed"] is True

    code, out, _ = run(capsys, "rollback", "--run", d, "--reason", "regression")
    assert code == 0
    state = load_promotion_state(run_dir / "promotion.json")
    assert state.state == "monitoring" and dict(state.current_release) == {"reason": "regression"}
    assert [e.event for e in state.history] == ["promoted", "behaviour_gate", "rollback"]
    log = [
        json.loads(line) for line in (run_dir / "promotion_history.jsonl").read_text().splitlines()
    ]
    assert [line["event"] for line in log] == ["promoted", "rollback"]


def test_promote_force_and_swap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    summary = write(tmp_path, {"status": "HOLD", "results": []})
    assert run(capsys, "record", "--run", d, "--summary", summary, "--required-passes", "1")[0] == 0
    ckpt = tmp_path / "p.pt"
    ckpt.write_bytes(b"x")
    code, out, _ = run(
        capsys, "promote", "--run", d, "--checkpoint", str(ckpt), "--force", "--policy-hash", "abc"
    )
    assert code == 0 and json.loads(out)["promotion"]["current_release"]["policy_hash"] == "abc"
    code, out, _ = run(capsys, "swap", "--run", d, "--checkpoint", str(ckpt), "--format", "human")
    assert code == 0 and "History:         2 events (latest: policy_swap" in out


def test_promote_requires_behaviour_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path)
    summary = write(tmp_path, {"status": "PASS", "results": []})
    run(capsys, "record", "--run", d, "--summary", summary, "--required-passes", "1")
    ckpt = tmp_path / "p.pt"
    ckpt.write_bytes(b"x")
    code, out, _ = run(
        capsys, "promote", "--run", d, "--checkpoint", str(ckpt), "--require-behaviour-gate"
    )
    assert code == 1 and json.loads(out)["error"] == "behaviour_gate_not_passed"
    worse = write(tmp_path, [0.0, 0.0, 0.1], "worse.json")
    better = write(tmp_path, [5.0, 5.0, 5.0], "better.json")
    code, _, _ = run(
        capsys,
        "gate",
        "--run",
        d,
        "--candidate-returns",
        worse,
        "--incumbent-returns",
        better,
        "--margin",
        "1",
        "--min-episodes",
        "3",
    )
    assert code == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--run", "{d}/nowhere"], "no promotion state file"),
        (["promote", "--run", "{d}", "--checkpoint", "{d}/missing.pt"], "is not a file"),
        (["record", "--run", "{d}/nowhere", "--summary", "{d}/s.json"], "is not a directory"),
        (["record", "--run", "{d}", "--summary", "{d}/s.json", "--required-passes", "0"], "1..10"),
        (["status", "--run", "{d}/corrupt"], "not valid JSON"),
    ],
)
def test_run_input_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    write(tmp_path, {"status": "PASS", "results": []}, "s.json")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "promotion.json").write_text("{")
    if argv[0] == "promote":
        run(capsys, "record", "--run", str(tmp_path), "--summary", str(tmp_path / "s.json"))
    code, _, err = run(capsys, *[a.format(d=tmp_path) for a in argv])
    assert code == 2 and message in err and err.count("\n") == 1


def test_promote_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["promote", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("evaluate", "record", "status", "promote", "rollback", "swap", "gate"):
        assert name in out
