"""Anneal guardrail arithmetic and status reduction (spec §4.3–§4.4, §11 items 5–7)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from townlet.errors import ConfigError
from townlet.policy.training.strategies.anneal.flags import (
    AnnealBaselines,
    AnnealFlags,
    anneal_status,
    baselines_from_dict,
    baselines_to_dict,
    bc_stage_passed,
    drop_flag,
    evaluate_flags,
    loss_drift_flag,
    stage_flags,
    update_baselines,
)

REF = AnnealBaselines(loss_total=1.0, queue_conflict_events=20, queue_conflict_intensity_sum=40)


def flags(loss: float = 1.0, queue: float = 20.0, intensity: float = 40.0) -> AnnealFlags:
    return evaluate_flags(REF, loss_total=loss, queue_events=queue, queue_intensity=intensity)


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        (1.05, False),
        (1.11, True),
        (0.89, True),
        (0.95, False),
        (1.0, False),
        # IEEE: 1.10 - 1.0 = 0.10000000000000009 > 0.1: the "boundary" flags, as in the reference.
        (1.10, True),
        # 1.0 - 0.9 = 0.09999999999999998, not > 0.1: the lower "boundary" does not flag.
        (0.90, False),
    ],
)
def test_loss_flag_is_two_sided_and_strict(loss: float, expected: bool) -> None:
    assert flags(loss=loss).loss_flag is expected
    assert flags(loss=loss).queue_flag is False


def test_loss_flag_exact_boundary_does_not_flag() -> None:
    # |3 - 2| / 2 = 0.5 exactly: equality is not "greater than".
    base = AnnealBaselines(loss_total=2.0)
    out = evaluate_flags(
        base, loss_total=3.0, queue_events=0, queue_intensity=0, loss_tolerance=0.5
    )
    assert out.loss_flag is False
    out = evaluate_flags(
        base, loss_total=3.0000001, queue_events=0, queue_intensity=0, loss_tolerance=0.5
    )
    assert out.loss_flag is True


@pytest.mark.parametrize(
    ("queue", "expected"),
    [(17.0, False), (16.99, True), (20.0, False), (25.0, False), (0.0, True)],
)
def test_queue_flag_only_on_strict_drop(queue: float, expected: bool) -> None:
    # (1 - 0.15) * 20 = 17.0 exactly; 17 < 17.0 is false.
    assert flags(queue=queue).queue_flag is expected
    assert flags(queue=queue).intensity_flag is False


@pytest.mark.parametrize(("intensity", "expected"), [(34.0, False), (33.99, True), (80.0, False)])
def test_intensity_threshold_is_34(intensity: float, expected: bool) -> None:
    assert flags(intensity=intensity).intensity_flag is expected


@pytest.mark.parametrize("baseline", [None, 0.0, -0.0])
def test_missing_or_zero_baseline_never_flags(baseline: float | None) -> None:
    base = AnnealBaselines(
        loss_total=baseline, queue_conflict_events=baseline, queue_conflict_intensity_sum=baseline
    )
    out = evaluate_flags(base, loss_total=1e9, queue_events=-1e9, queue_intensity=-1e9)
    assert out == AnnealFlags(loss_flag=False, queue_flag=False, intensity_flag=False)
    assert not out.any


def test_fresh_baselines_never_flag() -> None:
    assert not evaluate_flags(
        AnnealBaselines(), loss_total=5.0, queue_events=0, queue_intensity=0
    ).any


def test_negative_loss_baseline_uses_absolute_value() -> None:
    # Legacy guard is "!= 0", so negative baselines take part: |-1.2 - -1.0| / 1.0 = 0.2 > 0.1.
    assert loss_drift_flag(-1.2, -1.0, 0.1) is True
    assert loss_drift_flag(-1.05, -1.0, 0.1) is False


def test_drop_flag_helpers() -> None:
    assert drop_flag(8.4, 10.0, 0.15) is True
    assert drop_flag(8.5, 10.0, 0.15) is False
    assert drop_flag(1.0, None, 0.15) is False


def test_custom_tolerances() -> None:
    out = evaluate_flags(
        REF,
        loss_total=1.3,
        queue_events=11.0,
        queue_intensity=19.0,
        loss_tolerance=0.5,
        queue_tolerance=0.5,
    )
    # 1.3 within 50%; 11 < 10 false; 19 < 20 true.
    assert out == AnnealFlags(loss_flag=False, queue_flag=False, intensity_flag=True)


@pytest.mark.parametrize("tol", [-0.1, float("nan"), float("inf")])
def test_bad_tolerance_is_config_error(tol: float) -> None:
    with pytest.raises(ConfigError, match="anneal_loss_tolerance"):
        evaluate_flags(REF, loss_total=1, queue_events=1, queue_intensity=1, loss_tolerance=tol)
    with pytest.raises(ConfigError, match="anneal_queue_tolerance"):
        evaluate_flags(REF, loss_total=1, queue_events=1, queue_intensity=1, queue_tolerance=tol)


@given(
    base=st.floats(min_value=1e-3, max_value=1e3),
    value=st.floats(min_value=0.0, max_value=2e3),
    tol=st.floats(min_value=0.0, max_value=0.99),
)
def test_drop_flag_matches_inequality(base: float, value: float, tol: float) -> None:
    assert drop_flag(value, base, tol) is (value < (1 - tol) * base)
    assert drop_flag(value, -0.0, tol) is False


# --- status reduction -------------------------------------------------------------------------


def ppo(cycle: float, **flag_values: bool) -> dict[str, Any]:
    return {"cycle": cycle, "mode": "ppo", "loss_total": 1.0, **flag_values}


def test_status_empty_is_pass() -> None:
    assert anneal_status([]) == "PASS"


def test_status_pass_hold_fail() -> None:
    bc_ok = {"cycle": 0.0, "mode": "bc", "passed": True}
    bc_bad = {"cycle": 0.0, "mode": "bc", "passed": False, "rolled_back": True}
    assert anneal_status([bc_ok, ppo(1.0, anneal_loss_flag=False)]) == "PASS"
    assert anneal_status([bc_ok, ppo(1.0, anneal_queue_flag=True)]) == "HOLD"
    assert anneal_status([ppo(1.0, anneal_intensity_flag=True), bc_bad]) == "FAIL"
    # FAIL wins over an earlier HOLD, and returns at the failed BC stage.
    assert anneal_status([ppo(0.0, anneal_loss_flag=True), bc_bad, ppo(2.0)]) == "FAIL"


def test_status_bc_without_passed_counts_as_passed() -> None:
    assert anneal_status([{"mode": "bc", "accuracy": 0.1}]) == "PASS"
    assert bc_stage_passed({"mode": "bc"}) is True
    # A present null is falsy: the reference's `.get("passed", True)` fails it.
    assert bc_stage_passed({"mode": "bc", "passed": None}) is False


def test_status_ignores_flags_on_non_ppo_modes() -> None:
    assert anneal_status([{"mode": "bc", "passed": True, "anneal_loss_flag": True}]) == "PASS"
    assert anneal_status([{"mode": "other", "passed": False}]) == "PASS"


@attrs.frozen(kw_only=True)
class _Stage:
    mode: str
    passed: bool | None = None
    anneal_loss_flag: bool | None = None
    anneal_queue_flag: bool | None = None
    anneal_intensity_flag: bool | None = None


@attrs.frozen(kw_only=True)
class _ShortStage:
    mode: str
    loss_flag: bool = False
    queue_flag: bool = False
    intensity_flag: bool = False


def test_status_reads_records_by_attribute() -> None:
    assert anneal_status([_Stage(mode="bc", passed=True), _Stage(mode="ppo")]) == "PASS"
    assert anneal_status([_Stage(mode="ppo", anneal_queue_flag=True)]) == "HOLD"
    assert anneal_status([_Stage(mode="bc", passed=False)]) == "FAIL"
    assert anneal_status([_ShortStage(mode="ppo", intensity_flag=True)]) == "HOLD"
    assert stage_flags(_ShortStage(mode="ppo", loss_flag=True)) == AnnealFlags(
        loss_flag=True, queue_flag=False, intensity_flag=False
    )


def test_stage_flags_prefers_reference_keys() -> None:
    got = stage_flags({"anneal_loss_flag": False, "loss_flag": True, "queue_flag": True})
    assert got == AnnealFlags(loss_flag=False, queue_flag=True, intensity_flag=False)


# --- baselines ----------------------------------------------------------------------------------


def test_update_baselines_from_final_epoch() -> None:
    epoch = {
        "loss_total": 0.75,
        "queue_conflict_events": 12,
        "queue_conflict_intensity_sum": 30.5,
        "shared_meal_events": 3,
    }
    got = update_baselines(AnnealBaselines(), epoch)
    assert got == AnnealBaselines(
        loss_total=0.75, queue_conflict_events=12.0, queue_conflict_intensity_sum=30.5
    )
    # The next stage compares against these.
    nxt = evaluate_flags(got, loss_total=0.75, queue_events=10.0, queue_intensity=30.5)
    assert nxt == AnnealFlags(loss_flag=False, queue_flag=True, intensity_flag=False)


def test_update_baselines_missing_values_become_zero() -> None:
    got = update_baselines(REF, {"loss_total": None})
    assert got == AnnealBaselines(
        loss_total=0.0, queue_conflict_events=0.0, queue_conflict_intensity_sum=0.0
    )
    assert not evaluate_flags(got, loss_total=9, queue_events=0, queue_intensity=0).any


def test_update_baselines_reads_records() -> None:
    @attrs.frozen
    class Epoch:
        loss_total: float
        queue_conflict_events: float
        queue_conflict_intensity_sum: float

    got = update_baselines(AnnealBaselines(), Epoch(1.5, 4.0, 8.0))
    assert got.queue_conflict_intensity_sum == 8.0


def test_update_baselines_leaves_input_unchanged() -> None:
    before = attrs.evolve(REF)
    update_baselines(REF, {"loss_total": 3.0})
    assert before == REF


def test_baselines_dict_round_trip() -> None:
    block = baselines_to_dict(REF)
    assert block == {
        "loss_total": 1.0,
        "queue_conflict_events": 20.0,
        "queue_conflict_intensity": 40.0,
    }
    assert baselines_from_dict(block) == REF
    assert baselines_to_dict(AnnealBaselines()) == {}
    assert baselines_from_dict({}) == AnnealBaselines()
    with pytest.raises(ConfigError, match=r"baselines\.loss_total"):
        baselines_from_dict({"loss_total": "high"})
