"""Result records: reference defaults, bounds with the reference's wording, extras, round trips."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from townlet.dto.convert import from_dict, from_json, to_dict, to_json
from townlet.dto.policy import (
    AnnealStageResult,
    AnnealSummary,
    BCTrainingResult,
    PPOTrainingResult,
    PromotionEvaluation,
    TrainingResultBase,
)
from townlet.errors import DTOValidationError

CORE: dict[str, Any] = {
    "epoch": 1.0,
    "updates": 2.0,
    "transitions": 4.0,
    "loss_policy": 0.1,
    "loss_value": 0.2,
    "loss_entropy": 1.0,
    "loss_total": 0.19,
    "clip_fraction": 0.5,
    "adv_mean": 0.0,
    "adv_std": 1.0,
    "grad_norm": 0.4,
    "kl_divergence": 0.01,
    "lr": 3e-4,
    "steps": 4.0,
}
BC: dict[str, Any] = {
    "manifest": "m.json",
    "accuracy": 0.8,
    "loss": 0.5,
    "learning_rate": 1e-3,
    "batch_size": 32,
    "epochs": 2,
}


def _ppo(**changes: Any) -> PPOTrainingResult:
    return PPOTrainingResult(**{**CORE, **changes})


def test_defaults() -> None:
    base = TrainingResultBase()
    assert base.schema_version == "1.0.0" and base.duration_sec is None
    assert BCTrainingResult(**BC).mode == "bc"
    ppo = _ppo()
    assert ppo.telemetry_version == 1.2
    assert (ppo.adv_zero_std_batches, ppo.adv_min_std) == (0.0, 0.0)
    assert (ppo.clip_triggered_minibatches, ppo.clip_fraction_max) == (0.0, 0.0)
    assert ppo.epoch_duration_sec is None and ppo.anneal_cycle is None and ppo.extras == {}
    assert AnnealSummary(stages=[], status="PASS", dataset_label="d").baselines == {}


@pytest.mark.parametrize(
    ("build", "text"),
    [
        (lambda: TrainingResultBase(duration_sec=-1), "greater than or equal to 0"),
        (lambda: BCTrainingResult(**{**BC, "accuracy": 1.5}), "less than or equal to 1"),
        (lambda: BCTrainingResult(**{**BC, "accuracy": -0.1}), "greater than or equal to 0"),
        (lambda: BCTrainingResult(**{**BC, "loss": -1}), "greater than or equal to 0"),
        (lambda: BCTrainingResult(**{**BC, "learning_rate": 0}), "greater than 0"),
        (lambda: BCTrainingResult(**{**BC, "batch_size": 0}), "greater than 0"),
        (lambda: BCTrainingResult(**{**BC, "epochs": 0}), "greater than 0"),
        (lambda: _ppo(clip_fraction=1.5), "less than or equal to 1"),
        (lambda: _ppo(epoch=0), "greater than 0"),
        (lambda: _ppo(lr=0), "greater than 0"),
        (lambda: _ppo(reward_advantage_corr=1.5), "less than or equal to 1"),
        (lambda: _ppo(reward_advantage_corr=-1.5), "greater than or equal to -1"),
        (lambda: AnnealStageResult(cycle=-1, mode="bc"), "greater than or equal to 0"),
        (
            lambda: AnnealSummary(
                stages=[], status="PASS", dataset_label="d", promotion_pass_streak=-1
            ),
            "greater than or equal to 0",
        ),
    ],
)
def test_bounds_use_reference_wording(build: Any, text: str) -> None:
    with pytest.raises(DTOValidationError, match=text):
        build()


def test_error_names_record_field_and_value() -> None:
    with pytest.raises(DTOValidationError) as exc:
        _ppo(clip_fraction=1.5)
    assert str(exc.value) == "PPOTrainingResult.clip_fraction: 1.5 must be less than or equal to 1"


def test_types_are_checked() -> None:
    with pytest.raises(DTOValidationError, match="epoch: expected a number"):
        _ppo(epoch="1")
    with pytest.raises(DTOValidationError, match="expected an integer"):
        BCTrainingResult(**{**BC, "batch_size": 32.5})
    assert BCTrainingResult(**{**BC, "batch_size": 32.0}).batch_size == 32
    assert _ppo(epoch=3).epoch == 3.0 and isinstance(_ppo(epoch=3).epoch, float)


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        _ppo().epoch = 2.0  # type: ignore[misc]
    assert isinstance(attrs.exceptions.FrozenInstanceError(), AttributeError)


def test_extra_keys_forbidden_except_ppo_conflict() -> None:
    for cls, data in [
        (BCTrainingResult, {**BC, "foo": 1}),
        (AnnealStageResult, {"cycle": 0, "mode": "bc", "foo": 1}),
        (TrainingResultBase, {"foo": 1}),
    ]:
        with pytest.raises(DTOValidationError, match="foo: unknown key"):
            from_dict(cls, data)
    ppo = from_dict(PPOTrainingResult, {**CORE, "conflict.rivalry_max_mean_avg": 0.5})
    assert ppo.extras == {"conflict.rivalry_max_mean_avg": 0.5}
    assert to_dict(ppo)["conflict.rivalry_max_mean_avg"] == 0.5 and "extras" not in to_dict(ppo)
    with pytest.raises(DTOValidationError) as exc:
        from_dict(PPOTrainingResult, {**CORE, "foo": 1.0})
    assert "Unknown field 'foo' in PPOTrainingResult. Only 'conflict.*' dynamic fields" in str(
        exc.value
    )
    with pytest.raises(DTOValidationError, match="Unknown field 'foo'"):
        _ppo(extras={"foo": 1.0})


def test_to_dict_order_and_none_kept() -> None:
    ppo = _ppo(extras={"conflict.x_avg": 1.0})
    keys = list(to_dict(ppo))
    assert keys[:3] == ["schema_version", "duration_sec", "epoch"]
    assert keys[-1] == "conflict.x_avg" and keys[-2] == "baseline_log_prob_mean"
    assert len(keys) == 56 + 1  # the reference's 56 declared keys plus one extra
    assert to_dict(ppo)["epoch_duration_sec"] is None
    with_ext = to_dict(_ppo(bc_coef=0.5, critic_warmup=True))
    assert with_ext["bc_coef"] == 0.5 and with_ext["critic_warmup"] is True
    assert "loss_bc" not in with_ext
    assert list(to_dict(BCTrainingResult(**BC))) == [
        "schema_version",
        "duration_sec",
        "mode",
        "manifest",
        "accuracy",
        "loss",
        "learning_rate",
        "batch_size",
        "epochs",
        "val_accuracy",
        "val_loss",
        "weight_decay",
        "device",
    ]


def test_summary_nests_stage_dicts() -> None:
    summary = AnnealSummary(
        stages=[{"cycle": 0, "mode": "bc", "accuracy": 0.95, "passed": True}],
        status="PASS",
        dataset_label="idle",
        baselines={"idle": {"loss_total": 1}},
    )
    assert isinstance(summary.stages[0], AnnealStageResult)
    out = to_dict(summary)
    assert out["stages"][0]["accuracy"] == 0.95 and out["baselines"] == {
        "idle": {"loss_total": 1.0}
    }
    assert from_dict(AnnealSummary, json.loads(json.dumps(out))) == summary


def test_all_records_round_trip_through_json() -> None:
    records: list[Any] = [
        TrainingResultBase(duration_sec=1.5),
        BCTrainingResult(**BC, val_accuracy=0.7, val_loss=0.6, device="cpu"),
        _ppo(data_mode="replay", anneal_bc_passed=True, loss_bc=0.3, extras={"conflict.a": 2.0}),
        AnnealStageResult(cycle=1, mode="ppo", loss_total=0.5, anneal_loss_flag=False),
        AnnealSummary(stages=[], status="HOLD", dataset_label="d", promotion_pass_streak=0),
        PromotionEvaluation(
            pass_streak=2,
            required_passes=2,
            candidate_ready=True,
            last_result="pass",
            last_evaluated_tick=2,
        ),
    ]
    for record in records:
        assert from_json(type(record), to_json(record)) == record
        assert record.to_dict() == to_dict(record)


def test_repr_leaves_out_none() -> None:
    text = repr(BCTrainingResult(**BC))
    assert text.startswith("BCTrainingResult(schema_version='1.0.0', mode='bc'")
    assert "val_loss" not in text and "duration_sec" not in text


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(
    clip=st.floats(min_value=0, max_value=1),
    loss=finite,
    corr=st.one_of(st.none(), st.floats(min_value=-1, max_value=1)),
    extras=st.dictionaries(st.text(max_size=8).map(lambda s: "conflict." + s), finite, max_size=3),
)
def test_ppo_round_trip_property(
    clip: float, loss: float, corr: float | None, extras: dict[str, float]
) -> None:
    record = _ppo(clip_fraction=clip, loss_total=loss, reward_advantage_corr=corr, extras=extras)
    assert from_dict(PPOTrainingResult, json.loads(json.dumps(to_dict(record)))) == record


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_clip_fraction_validator_property(value: float) -> None:
    try:
        record = _ppo(clip_fraction=value)
    except DTOValidationError as exc:
        assert not 0.0 <= value <= 1.0
        assert "clip_fraction" in str(exc)
    else:
        assert record.clip_fraction == value


def test_summary_stage_dicts_are_checked_like_records() -> None:
    with pytest.raises(DTOValidationError, match=r"unknown keys \['colour'\]"):
        AnnealSummary(
            stages=[{"cycle": 0, "mode": "bc", "colour": 1}], status="P", dataset_label="d"
        )
    with pytest.raises(DTOValidationError, match="greater than or equal to 0"):
        AnnealSummary(stages=[{"cycle": -1, "mode": "bc"}], status="P", dataset_label="d")


def test_records_are_built_without_cattrs() -> None:
    # cattrs lives in townlet.dto.convert; the records only hand themselves to it in to_dict().
    import ast
    from pathlib import Path

    import townlet.dto.policy as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert "from_dict" not in names and not any("cattrs" in name for name in names)
