"""Promotion state machine (spec §6, §11 items 9–10), persistence, log lines and policy hashes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from townlet.errors import PromotionError
from townlet.policy.training.services.behaviour_gate import paired_return_gate
from townlet.policy.training.services.promotion import (
    HISTORY_LIMIT,
    PromotionState,
    evaluation_summary,
    init_promotion_state,
    latest_behaviour_gate,
    normalize_release,
    promote,
    record_behaviour_gate,
    record_evaluation,
    rollback,
    swap,
    update_from_metrics,
)
from townlet.policy.training.services.promotion_io import (
    append_promotion_log,
    file_sha256,
    load_promotion_state,
    policy_hash,
    promotion_state_from_dict,
    promotion_state_to_dict,
    save_promotion_state,
)

RESULTS = [{"cycle": 0.0, "mode": "bc", "passed": True}, {"cycle": 1.0, "mode": "ppo"}]


def fresh() -> PromotionState:
    return init_promotion_state(required_passes=2, config_id="cfg-1", policy_hash="h0")


def ready_state() -> PromotionState:
    state = record_evaluation(fresh(), "PASS", RESULTS)
    return record_evaluation(state, "PASS", RESULTS, candidate={"checkpoint": "/ckpt/a.pt"})


def test_initial_state() -> None:
    state = fresh()
    assert state.state == "monitoring" and state.pass_streak == 0 and not state.candidate_ready
    assert dict(state.initial_release) == {"config_id": "cfg-1", "policy_hash": "h0"}
    assert state.current_release == state.initial_release
    assert dict(init_promotion_state().initial_release) == {}


def test_first_pass_not_ready_second_pass_ready() -> None:
    one = record_evaluation(fresh(), "PASS", RESULTS)
    assert (one.pass_streak, one.last_result, one.last_evaluated_tick) == (1, "pass", 1)
    assert not one.candidate_ready and one.state == "monitoring"
    assert dict(one.candidate or {}) == {"status": "PASS", "cycle": 1.0, "mode": "ppo"}
    two = record_evaluation(one, "PASS", RESULTS)
    assert two.candidate_ready and two.state == "ready"
    assert two.candidate_ready_tick == 2 and two.pass_streak == 2
    three = record_evaluation(two, "PASS", RESULTS)
    assert three.candidate_ready_tick == 2  # an already-ready state keeps its tick
    assert evaluation_summary(three) == {
        "pass_streak": 3,
        "required_passes": 2,
        "candidate_ready": True,
        "last_result": "pass",
        "last_evaluated_tick": 3,
    }


@pytest.mark.parametrize("status", ["HOLD", "FAIL", "hold"])
def test_hold_and_fail_reset_streak(status: str) -> None:
    state = record_evaluation(ready_state(), status, RESULTS)
    assert state.pass_streak == 0 and state.last_result == "fail"
    assert state.state == "monitoring" and not state.candidate_ready
    assert state.candidate_ready_tick is None and state.candidate is None
    assert state.last_evaluated_tick == 3


def test_pass_with_no_results_has_null_candidate_fields() -> None:
    state = record_evaluation(fresh(), "PASS", [])
    assert dict(state.candidate or {}) == {"status": "PASS", "cycle": None, "mode": None}


def test_required_passes_override_and_bad_status() -> None:
    state = record_evaluation(fresh(), "PASS", RESULTS, required_passes=1)
    assert state.candidate_ready and state.required_passes == 1
    with pytest.raises(PromotionError, match="status: expected PASS, HOLD or FAIL"):
        record_evaluation(fresh(), "MAYBE", RESULTS)


def test_transitions_leave_input_unchanged() -> None:
    state = ready_state()
    snapshot = promotion_state_to_dict(state)
    record_evaluation(state, "FAIL", RESULTS)
    promote(state)
    rollback(state, {"reason": "x"})
    assert promotion_state_to_dict(state) == snapshot


def test_promote() -> None:
    state = promote(ready_state(), {"policy_hash": "h1"}, timestamp="2024-01-01T00:00:00Z")
    assert state.state == "promoted" and state.pass_streak == 0 and not state.candidate_ready
    assert dict(state.current_release) == {
        "config_id": "cfg-1",
        "status": "PASS",
        "cycle": 1.0,
        "mode": "ppo",
        "checkpoint": "/ckpt/a.pt",
        "policy_hash": "h1",
    }
    event = state.history[-1]
    assert event.event == "promoted" and event.tick == 2
    assert dict(event.previous_release or {}) == {"config_id": "cfg-1", "policy_hash": "h0"}
    assert event.timestamp == "2024-01-01T00:00:00Z"
    assert state.candidate is not None  # not cleared by a promotion
    # "promoted" is sticky under later evaluations.
    later = record_evaluation(record_evaluation(state, "PASS", RESULTS), "PASS", RESULTS)
    assert later.state == "promoted" and later.candidate_ready
    assert record_evaluation(later, "FAIL", RESULTS).state == "promoted"


def test_promote_guards() -> None:
    with pytest.raises(PromotionError, match="promotion_not_ready: the candidate has 0 of 2"):
        promote(fresh(), {"checkpoint": "c.pt"})
    forced = promote(fresh(), {"checkpoint": "c.pt"}, require_ready=False)
    assert forced.state == "promoted"
    no_ckpt = record_evaluation(record_evaluation(fresh(), "PASS", RESULTS), "PASS", RESULTS)
    with pytest.raises(PromotionError, match="checkpoint"):
        promote(no_ckpt)
    with pytest.raises(PromotionError, match="behaviour_gate"):
        promote(ready_state(), require_behaviour_gate=True)


def test_behaviour_gate_recorded_and_required() -> None:
    bad = paired_return_gate([0.0, 0.0, 0.0], [5.0, 5.0, 5.1], margin=0.1, min_episodes=3)
    good = paired_return_gate([5.0, 5.0, 5.2], [5.0, 5.0, 5.1], margin=0.5, min_episodes=3)
    state = record_behaviour_gate(ready_state(), bad)
    assert state.history[-1].event == "behaviour_gate"
    assert (latest_behaviour_gate(state) or {})["passed"] is False
    with pytest.raises(PromotionError, match="no passing behaviour gate"):
        promote(state, require_behaviour_gate=True)
    state = record_behaviour_gate(state, good, tick=7)
    promoted = promote(state, require_behaviour_gate=True)
    assert promoted.state == "promoted" and state.history[-1].tick == 7
    assert latest_behaviour_gate(promoted) is None  # consumed by the release change


def test_rollback_restores_previous_release() -> None:
    promoted = promote(ready_state(), {"policy_hash": "h1"})
    back = rollback(promoted, {"reason": "regression", "checkpoint": None})
    assert back.state == "monitoring" and back.candidate is None and back.pass_streak == 0
    assert dict(back.current_release) == {
        "config_id": "cfg-1",
        "policy_hash": "h0",
        "reason": "regression",
    }
    assert back.history[-1].event == "rollback"
    # Repeated rollbacks resolve against the same latest promotion.
    again = rollback(back)
    assert dict(again.current_release) == {"config_id": "cfg-1", "policy_hash": "h0"}


def test_rollback_without_promotion_uses_initial_release() -> None:
    back = rollback(fresh(), {"reason": "drill"})
    assert dict(back.current_release) == {
        "config_id": "cfg-1",
        "policy_hash": "h0",
        "reason": "drill",
    }


def test_second_promotion_rolls_back_to_first() -> None:
    first = promote(ready_state(), {"policy_hash": "h1"})
    second = promote(first, {"checkpoint": "/ckpt/b.pt", "policy_hash": "h2"}, require_ready=False)
    back = rollback(second)
    assert back.current_release["policy_hash"] == "h1"


def test_swap_clears_candidate() -> None:
    state = swap(ready_state(), {"checkpoint": "/x.pt", "policy_hash": "hx"})
    assert state.candidate is None and state.state == "monitoring"
    assert dict(state.current_release) == {
        "config_id": "cfg-1",
        "checkpoint": "/x.pt",
        "policy_hash": "hx",
    }
    assert state.history[-1].event == "policy_swap"


def test_history_capped_at_50_fifo() -> None:
    state = fresh()
    for i in range(HISTORY_LIMIT + 7):
        state = swap(state, {"checkpoint": f"/c{i}.pt"}, tick=i)
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[0].tick == 7 and state.history[-1].tick == HISTORY_LIMIT + 6
    with pytest.raises(PromotionError, match="at most 50"):
        attrs.evolve(state, history=(*state.history, state.history[0]))


def test_records_are_read_only() -> None:
    state = ready_state()
    with pytest.raises(TypeError):
        state.current_release["policy_hash"] = "x"  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.pass_streak = 5  # type: ignore[misc]


def test_update_from_metrics() -> None:
    block = {"pass_streak": 3, "candidate_ready": True, "last_result": "pass"}
    state = update_from_metrics(fresh(), {**block, "required_passes": 9}, tick=40)
    assert state.state == "ready" and state.candidate_ready_tick == 40
    assert state.required_passes == 2  # ignored in the block, as in the reference
    state = update_from_metrics(state, {"candidate_ready": False}, tick=41)
    assert state.state == "monitoring" and state.candidate_ready_tick is None
    with pytest.raises(PromotionError, match="last_result"):
        update_from_metrics(fresh(), {"last_result": "maybe"}, tick=1)


def test_normalize_release() -> None:
    assert normalize_release({"a": 1, "b": None, 3: "x"}, config_id=None) == {"a": 1, "3": "x"}
    assert normalize_release(None, config_id="c") == {"config_id": "c"}


# --- persistence ------------------------------------------------------------------------------


def busy_state() -> PromotionState:
    state = promote(ready_state(), {"policy_hash": "h1"}, timestamp="t0")
    state = record_behaviour_gate(
        state, paired_return_gate([1.0, 2.0], [1.0, 1.0], margin=1, min_episodes=2)
    )
    return rollback(state, {"reason": "drill"})


def test_save_load_round_trip(tmp_path: Path) -> None:
    state = busy_state()
    path = save_promotion_state(tmp_path / "run" / "promotion.json", state)
    assert load_promotion_state(path) == state
    data = json.loads(path.read_text())
    assert list(data)[:3] == ["schema_version", "state", "pass_streak"]
    assert data["history"][0]["timestamp"] == "t0"
    assert not list(path.parent.glob("*.tmp"))


def test_load_reference_snapshot() -> None:
    # The reference's snapshot() shape (the anneal CLI's "promotion" block).
    snapshot = {
        "state": "ready",
        "pass_streak": 2,
        "required_passes": 2,
        "candidate_ready": True,
        "candidate_ready_tick": 2,
        "last_result": "pass",
        "last_evaluated_tick": 2,
        "current_release": {"config_id": "demo"},
        "initial_release": {"config_id": "demo"},
        "candidate": {"status": "PASS", "cycle": 1.0, "mode": "ppo"},
        "history": [],
    }
    state = promotion_state_from_dict(snapshot)
    assert state.state == "ready" and state.evaluations == 2
    assert promotion_state_from_dict({}) == PromotionState()


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"pass_streak": -1}, "field 'pass_streak': expected an integer >= 0"),
        ({"pass_streak": True}, "field 'pass_streak'"),
        ({"required_passes": 11}, "field 'required_passes': expected an integer >= 1 and <= 10"),
        ({"state": "gone"}, "field 'state': expected one of 'monitoring', 'ready', 'promoted'"),
        ({"candidate_ready": "yes"}, "field 'candidate_ready': expected true or false"),
        ({"current_release": [1]}, "field 'current_release': expected an object"),
        ({"history": {}}, "field 'history': expected a list"),
        ({"history": [3]}, "field 'history[0]': expected an object"),
        ({"history": [{"event": "boom"}]}, "field 'history[0].event'"),
        ({"history": [{"event": "rollback", "x": 1}]}, "unknown field 'history[0].x'"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"schema_version": "9"}, "field 'schema_version'"),
    ],
)
def test_bad_file_names_file_and_field(tmp_path: Path, patch: dict[str, Any], message: str) -> None:
    path = tmp_path / "promotion.json"
    data = {**promotion_state_to_dict(fresh()), **patch}
    path.write_text(json.dumps(data))
    with pytest.raises(PromotionError, match=re.escape(message)) as exc:
        load_promotion_state(path)
    assert str(exc.value).startswith(str(path))
    assert isinstance(exc.value, ValueError)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PromotionError, match="no promotion state file"):
        load_promotion_state(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PromotionError, match="not valid JSON"):
        load_promotion_state(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(PromotionError, match="expected a JSON object, got list"):
        load_promotion_state(tmp_path / "list.json")


def test_append_promotion_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "promotion_history.jsonl"
    state = promote(ready_state(), {"policy_hash": "h1"})
    append_promotion_log(log, state)
    state = rollback(state, {"reason": "r"})
    append_promotion_log(log, state)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["promoted", "rollback"]
    assert lines[0]["state"]["state"] == "promoted"
    assert lines[1]["state"]["current_release"]["reason"] == "r"
    with pytest.raises(PromotionError, match="no history event"):
        append_promotion_log(log, fresh())


# --- hashes -------------------------------------------------------------------------------------


def test_policy_hash_deterministic_and_order_free() -> None:
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}
    b = {"b": np.zeros(3, np.float32), "w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    assert policy_hash(a) == policy_hash(b)
    assert len(policy_hash(a)) == 64
    # A different value, shape, dtype or name changes it.
    changed = {**a, "b": np.array([0, 0, 1e-7], np.float32)}
    assert policy_hash(changed) != policy_hash(a)
    assert policy_hash({**a, "w": a["w"].reshape(3, 2)}) != policy_hash(a)
    assert policy_hash({**a, "b": np.zeros(3, np.float64)}) != policy_hash(a)
    assert policy_hash({"c": a["b"], "w": a["w"]}) != policy_hash(a)
    # Non-contiguous views hash as their C-order copy.
    assert policy_hash({"w": a["w"].T}) == policy_hash({"w": np.ascontiguousarray(a["w"].T)})


def test_policy_hash_duck_typed_tensor() -> None:
    class FakeTensor:
        def __init__(self, array: np.ndarray) -> None:
            self.array = array

        def detach(self) -> FakeTensor:
            return self

        def cpu(self) -> FakeTensor:
            return self

        def numpy(self) -> np.ndarray:
            return self.array

    arr = np.ones((2, 2), np.float32)
    assert policy_hash({"w": FakeTensor(arr)}) == policy_hash({"w": arr})
    with pytest.raises(PromotionError, match="not an array"):
        policy_hash({"w": object()})


def test_policy_hash_torch_tensor() -> None:
    torch = pytest.importorskip("torch")
    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    assert policy_hash({"w": torch.from_numpy(arr.copy())}) == policy_hash({"w": arr})


def test_file_hash_matches_bytes_hash(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    payload = bytes(range(256)) * 5000
    path.write_bytes(payload)
    assert file_sha256(path) == policy_hash(payload)
    # sha256 of b"" is well known.
    assert policy_hash(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_public_names_resolve_and_import_without_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    import townlet

    names = [
        "AnnealBaselines",
        "PromotionState",
        "PromotionError",
        "decide",
        "paired_return_gate",
        "policy_hash",
        "record_evaluation",
        "anneal_status",
    ]
    for name in names:
        assert getattr(townlet, name) is not None
    # In a subprocess where importing torch fails, the promotion API and CLI still work.
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ImportError('torch blocked for this test')\n")
    code = (
        "import townlet, townlet.cli.promote_cmd\n"
        + "".join(f"townlet.{n}\n" for n in names)
        + "import sys; assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
    )
    env_path = f"{tmp_path}"
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r})\n{code}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
