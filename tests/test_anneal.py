"""run_anneal / anneal_stage_step: a real BC + PPO anneal on a small town capture, the BC gate,
weight carry-over, bc_weight as bc_coef, critic warm-up, baselines, files, errors, decide()."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

torch = pytest.importorskip("torch")

from townlet.config import (  # noqa: E402
    AnnealStage,
    BCConfig,
    Config,
    PromotionConfig,
    SocialRewardScheduleEntry,
    TrainingConfig,
)
from townlet.dto.telemetry import read_telemetry  # noqa: E402
from townlet.errors import ConfigError  # noqa: E402
from townlet.policy.replay import ReplaySample  # noqa: E402
from townlet.policy.rollout import (  # noqa: E402
    RolloutBuffer,
    build_rollout_dataset,
    capture_rollout,
    save_rollout,
)
from townlet.policy.training.services.promotion_decision import decide  # noqa: E402
from townlet.policy.training.strategies.anneal.data import AnnealData, RolloutPlan  # noqa: E402
from townlet.policy.training.strategies.anneal.run import (  # noqa: E402
    run_anneal,
    run_anneal_with_state,
)
from townlet.policy.training.strategies.anneal.state import init_anneal_state, select_social_stage  # noqa: E402
from townlet.policy.training.strategies.anneal.step import anneal_stage_step  # noqa: E402
from townlet.policy.training.strategies.ppo.train import train_ppo  # noqa: E402
from townlet.world import WorldConfig  # noqa: E402

WORLD = WorldConfig(num_agents=4)
BC = AnnealStage(cycle=0, mode="bc")
PPO1 = AnnealStage(cycle=1, mode="ppo", epochs=1, bc_weight=0.5)
PPO2 = AnnealStage(cycle=2, mode="ppo", epochs=1, bc_weight=0.25)


@pytest.fixture(scope="module")
def demos() -> RolloutBuffer:
    return capture_rollout(WORLD, "scripted", 40, 0)


def _config(*stages: AnnealStage, **training: Any) -> Config:
    settings: dict[str, Any] = {
        "bc": BCConfig(epochs=2, batch_size=32),
        "anneal_accuracy_threshold": 0.2,
        "anneal_loss_tolerance": 1e9,  # keep the end-to-end runs at PASS; flags tested below
        **training,
    }
    return Config(
        training=TrainingConfig(anneal_schedule=stages, **settings),
        promotion=PromotionConfig(required_passes=1),
    )


def _samples(buffer: RolloutBuffer) -> list[ReplaySample]:
    return list(buffer.samples)


def test_bc_then_two_ppo_stages_on_fresh_rollouts(demos: RolloutBuffer, tmp_path: Path) -> None:
    config = _config(PPO2, BC, PPO1)  # run sorted by cycle
    run = run_anneal_with_state(
        config,
        bc_data=_samples(demos),
        rollout=RolloutPlan(world=WORLD, ticks=30),
        out_dir=tmp_path,
        quiet=True,
    )
    summary = run.summary
    assert [(s.mode, s.cycle) for s in summary.stages] == [("bc", 0.0), ("ppo", 1.0), ("ppo", 2.0)]
    bc = summary.stages[0]
    assert bc.passed is True and bc.rolled_back is False and bc.threshold == 0.2
    assert summary.status == "PASS" and summary.dataset_label == "rollout_buffer"
    epochs = read_telemetry(tmp_path / "telemetry.jsonl")
    # Stage 1: one warm-up epoch (value head only) + its epoch; stage 2: its epoch.
    assert [e.critic_warmup for e in epochs] == [True, None, None]
    assert [e.bc_coef for e in epochs] == [0.5, 0.5, 0.25]
    assert [e.anneal_cycle for e in epochs] == [1.0, 1.0, 2.0]
    assert all(e.anneal_bc_accuracy == bc.accuracy and e.anneal_bc_passed for e in epochs)
    assert epochs[0].anneal_loss_baseline is None and not epochs[1].anneal_loss_flag
    assert epochs[2].anneal_loss_baseline == pytest.approx(epochs[1].loss_total)
    assert epochs[2].anneal_queue_baseline == epochs[1].queue_conflict_events
    assert summary.baselines["rollout_buffer"]["loss_total"] == pytest.approx(epochs[2].loss_total)
    results = json.loads((tmp_path / "anneal_results.json").read_text())
    assert len(results) == 3 and all(len(r) == 18 for r in results)
    assert results[1]["loss_total"] == pytest.approx(summary.stages[1].loss_total)
    assert run.state.rollout_returns[0] is None and run.state.rollout_returns[1] is not None
    promotion = json.loads((tmp_path / "promotion.json").read_text())
    assert promotion["state"] == "ready" and promotion["candidate"]["mode"] == "ppo"
    assert promotion["candidate"]["checkpoint"] == str((tmp_path / "checkpoint.pt").resolve())
    from townlet.policy.training.strategies.ppo.checkpoint import load_ppo_state

    final = load_ppo_state(tmp_path / "checkpoint.pt")
    assert all(torch.equal(final.params[k], v) for k, v in run.state.params.items())
    decision = decide(summary.to_dict())
    assert (decision.decision, decision.status, decision.reasons) == ("PROMOTE", "pass", ())


def test_failed_bc_gate_stops_and_keeps_the_old_weights(
    demos: RolloutBuffer, tmp_path: Path
) -> None:
    config = _config(BC, PPO1, anneal_accuracy_threshold=1.0)
    run = run_anneal_with_state(
        config, bc_data=_samples(demos), rollout=RolloutPlan(world=WORLD, ticks=10), quiet=True
    )
    assert len(run.summary.stages) == 1
    stage = run.summary.stages[0]
    assert (stage.passed, stage.rolled_back, run.summary.status) == (False, True, "FAIL")
    assert run.state.params is None and run.state.stopped
    decision = decide(run.summary.to_dict())
    assert decision.decision == "FAIL" and decision.reasons == ("bc_stage_failed_cycle_0.0",)


def test_ppo_stage_continues_from_bc_weights_with_bc_coef_and_warmup(
    demos: RolloutBuffer,
) -> None:
    config = _config(BC, PPO1, critic_warmup_epochs=2)
    data = AnnealData(bc=_samples(demos), ppo=build_rollout_dataset(demos))
    state, _ = anneal_stage_step(init_anneal_state(3), BC, data, config)
    assert state.params is not None and state.warmup_pending
    before = {k: v.clone() for k, v in state.params.items()}
    after, output = anneal_stage_step(state, PPO1, data, config)
    result = output.result
    assert all(torch.equal(before[k], v) for k, v in state.params.items())  # input unchanged
    direct = train_ppo(
        data.ppo,  # type: ignore[arg-type]
        cfg=attrs.evolve(config.ppo, bc_coef=0.5),
        epochs=3,
        value_only_epochs=2,
        seed=3,
        init=state.params,
        spec=state.spec,
    )
    assert result.loss_total == direct.result.loss_total
    assert all(torch.equal(direct.state.params[k], v) for k, v in after.params.items())
    assert not after.warmup_pending and after.ppo_state is not None
    again, second = anneal_stage_step(after, PPO2, data, config)
    assert [e.critic_warmup for e in second.epochs] == [None]  # warm-up only after BC
    assert [e.critic_warmup for e in output.epochs] == [True, True, None]
    with pytest.warns(DeprecationWarning, match="read StageOutput.result.loss_total"):
        assert output.loss_total == result.loss_total
    assert again.ppo_state is not None and again.ppo_state.steps > after.ppo_state.steps


def test_loss_flag_raises_hold(demos: RolloutBuffer) -> None:
    config = _config(PPO1, PPO2, anneal_loss_tolerance=0.0)
    summary = run_anneal(config, ppo_data=build_rollout_dataset(demos), seed=1, quiet=True)
    assert summary.stages[1].anneal_loss_flag is True and summary.status == "HOLD"
    assert decide(summary.to_dict()).reasons == ("loss_flag_cycle_2.0",)


def test_errors_before_any_stage_runs(demos: RolloutBuffer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="anneal_schedule is empty"):
        run_anneal(_config(), bc_data=_samples(demos), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="Replay manifest required for PPO stages"):
        run_anneal(_config(BC, PPO1), bc_data=_samples(demos), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="BC manifest is required"):
        run_anneal(_config(BC, PPO1), rollout=RolloutPlan(world=WORLD), out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("cycle", "expected"), [(-1, "OFF"), (0, "OFF"), (1, "C1"), (2, "C1"), (5, "C2")]
)
def test_social_stage_selection(cycle: int, expected: str) -> None:
    entries = [
        SocialRewardScheduleEntry(cycle=3, stage="C2"),
        SocialRewardScheduleEntry(cycle=0, stage="OFF"),
        SocialRewardScheduleEntry(cycle=1, stage="C1"),
    ]
    training = TrainingConfig(social_reward_stage_override="OFF", social_reward_schedule=entries)
    assert select_social_stage(training, cycle) == expected
    assert select_social_stage(TrainingConfig(), cycle) is None


def test_rollout_stage_captures_in_the_cycles_social_stage(
    demos: RolloutBuffer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str]] = []
    import townlet.policy.rollout as rollout

    real = rollout.capture_rollout

    def spy(world: WorldConfig, policy: object, ticks: int, seed: int) -> RolloutBuffer:
        seen.append((world.social_reward_stage, getattr(policy, "kind", "?")))
        return real(world, policy, ticks, seed)

    monkeypatch.setattr(rollout, "capture_rollout", spy)
    entries = [SocialRewardScheduleEntry(cycle=2, stage="C2")]
    config = _config(PPO1, PPO2, social_reward_schedule=entries)
    run_anneal(config, rollout=RolloutPlan(world=WORLD, ticks=10), quiet=True)
    assert seen == [("OFF", "network"), ("C2", "network")]  # on-policy from the first stage


def test_ppo_stages_fall_back_to_the_configured_replay_manifest(
    demos: RolloutBuffer, tmp_path: Path
) -> None:
    save_rollout(demos, tmp_path / "capture")
    manifest = tmp_path / "capture" / "rollout_sample_manifest.json"
    config = _config(BC, PPO1, replay_manifest=manifest, bc=BCConfig(epochs=1, manifest=manifest))
    summary = run_anneal(config, quiet=True)
    assert summary.dataset_label == "rollout_sample_manifest"
    assert [s.mode for s in summary.stages] == ["bc", "ppo"] and summary.status == "PASS"
    assert summary.promotion_pass_streak == 1 and summary.promotion_candidate_ready is True


def test_stages_read_their_data_once_and_no_file_after(
    demos: RolloutBuffer, tmp_path: Path
) -> None:
    from townlet.policy.replay import ReplayDataset, ReplayDatasetConfig
    from townlet.policy.training.strategies.anneal.data import load_anneal_data

    save_rollout(demos, tmp_path / "capture")
    manifest = tmp_path / "capture" / "rollout_sample_manifest.json"
    config = _config(BC, PPO1, PPO2)
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(tmp_path / "capture"))
    on_disk = AnnealData(bc=manifest, ppo=dataset)
    loaded = load_anneal_data(on_disk, config)
    expected = run_anneal_with_state(config, bc_data=manifest, ppo_data=dataset, quiet=True)
    for path in (tmp_path / "capture").iterdir():
        path.unlink()  # the steps must not need the files any more
    state = init_anneal_state(config.seed)
    outputs = []
    for stage in (BC, PPO1, PPO2):
        state, output = anneal_stage_step(state, stage, loaded, config)
        outputs.append(output)
    assert [o.result.mode for o in outputs] == ["bc", "ppo", "ppo"]
    assert outputs[0].bc is not None and outputs[0].epochs == ()
    assert [o.result.loss_total for o in outputs] == [r.loss_total for r in expected.summary.stages]
    assert all(o.result.duration_sec == 0.0 for o in outputs)  # no clock given: none read


def _expert_cross_entropy(params: Any, spec: Any, demos: RolloutBuffer) -> float:
    from townlet.policy.training.strategies.bc.train import load_bc_inputs
    from townlet.policy.training.strategies.ppo.functional import demo_cross_entropy

    frames = load_bc_inputs(_samples(demos), BCConfig()).frames
    rows = (frames.maps, frames.features, frames.actions)
    return float(demo_cross_entropy(params, rows, spec=spec))


def test_demos_target_regularises_ppo_towards_the_expert(demos: RolloutBuffer) -> None:
    """With anneal_bc_target="demos" the bc_weight term clones the expert's actions, so a PPO
    stage from a random network ends closer to the expert than the default, which clones the
    rollout's own (random) actions; both are deterministic."""
    stage = AnnealStage(cycle=1, mode="ppo", epochs=3, bc_weight=1.0)
    data = AnnealData(bc=_samples(demos), rollout=RolloutPlan(world=WORLD, ticks=30))
    ends = {}
    for target in ("rollout", "demos"):
        config = _config(stage, anneal_bc_target=target, critic_warmup_epochs=0)
        state, output = anneal_stage_step(init_anneal_state(5), stage, data, config)
        again, _ = anneal_stage_step(init_anneal_state(5), stage, data, config)
        assert all(torch.equal(again.params[k], v) for k, v in state.params.items())
        ends[target] = (_expert_cross_entropy(state.params, state.spec, demos), output)
    (rollout_ce, rollout_out), (demos_ce, demos_out) = ends["rollout"], ends["demos"]
    assert demos_ce < rollout_ce - 0.1
    assert demos_out.result.loss_total != rollout_out.result.loss_total
    # The reported loss_bc is the expert cross-entropy the stage trained on.
    assert demos_out.epochs[-1].loss_bc > 0 and demos_out.epochs[-1].bc_coef == 1.0


def test_demos_target_needs_demonstrations(demos: RolloutBuffer, tmp_path: Path) -> None:
    config = _config(PPO1, anneal_bc_target="demos")
    with pytest.raises(ConfigError, match='anneal_bc_target = "demos" needs demonstrations'):
        run_anneal(config, rollout=RolloutPlan(world=WORLD), out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="anneal_bc_target: 'expert' is not one of"):
        TrainingConfig(anneal_bc_target="expert")  # type: ignore[arg-type]
