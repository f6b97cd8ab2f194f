"""The orchestrator fold: rollout-PPO cycles, checkpoints after every stage, exact resume after an
interruption, refusing a run directory of another schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from townlet.config import AnnealStage, BCConfig, Config, TrainingConfig  # noqa: E402
from townlet.dto.convert import to_dict  # noqa: E402
from townlet.dto.policy import AnnealStageResult  # noqa: E402
from townlet.errors import ConfigError  # noqa: E402
from townlet.policy.rollout import capture_rollout  # noqa: E402
from townlet.policy.training.orchestrator import (  # noqa: E402
    TrainingContext,
    rollout_cycles,
    run_stages,
)
from townlet.policy.training.strategies.anneal.data import AnnealData, RolloutPlan  # noqa: E402
from townlet.policy.training.strategies.anneal.io import read_run_state  # noqa: E402
from townlet.policy.training.strategies.anneal.state import AnnealState, init_anneal_state  # noqa: E402
from townlet.world import WorldConfig  # noqa: E402

WORLD = WorldConfig(num_agents=3)
STAGES = (AnnealStage(cycle=0, mode="bc"), *rollout_cycles([0.5, 0.25, 0.0], epochs=1))


class StopRunError(Exception):
    pass


def _context(run_dir: Path | None) -> TrainingContext:
    demos = capture_rollout(WORLD, "scripted", 30, 0)
    config = Config(training=TrainingConfig(bc=BCConfig(epochs=1), anneal_accuracy_threshold=0.1))
    data = AnnealData(bc=list(demos.samples), rollout=RolloutPlan(world=WORLD, ticks=20))
    return TrainingContext(config=config, data=data, state=init_anneal_state(5), run_dir=run_dir)


def _without_durations(results: tuple[AnnealStageResult, ...]) -> list[dict[str, object]]:
    return [{**to_dict(r), "duration_sec": None} for r in results]


def _telemetry(path: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "epoch_duration_sec"} for line in lines]


def test_rollout_cycles_builds_ppo_stages() -> None:
    assert rollout_cycles([0.4, 0.0], epochs=3, first_cycle=2) == (
        AnnealStage(cycle=2, mode="ppo", epochs=3, bc_weight=0.4),
        AnnealStage(cycle=3, mode="ppo", epochs=3, bc_weight=0.0),
    )


def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    full = run_stages(_context(tmp_path / "full"), STAGES, quiet=True).state
    assert full.stage_index == 4 and [r.mode for r in full.results] == ["bc", "ppo", "ppo", "ppo"]

    def stop_after_two(state: AnnealState, result: AnnealStageResult) -> None:
        if state.stage_index == 2:
            raise StopRunError

    part = tmp_path / "part"
    with pytest.raises(StopRunError):
        run_stages(_context(part), STAGES, on_stage=stop_after_two, quiet=True)
    saved = read_run_state(part)
    assert saved is not None and saved["stage_index"] == 2
    assert saved["checkpoint"] == "checkpoints/stage_002.pt"
    # An epoch line written after the last checkpoint is dropped and run again.
    with (part / "telemetry.jsonl").open("a") as handle:
        handle.write('{"partial": true}\n')
    resumed = run_stages(_context(part), STAGES, quiet=True).state
    assert _without_durations(resumed.results) == _without_durations(full.results)
    assert resumed.rollout_returns == full.rollout_returns
    assert resumed.params is not None and full.params is not None
    assert all(torch.equal(full.params[k], v) for k, v in resumed.params.items())
    assert _telemetry(part / "telemetry.jsonl") == _telemetry(tmp_path / "full" / "telemetry.jsonl")
    assert (part / "anneal_results.json").exists()


def test_run_directory_of_another_schedule_is_refused(tmp_path: Path) -> None:
    run_stages(_context(tmp_path), STAGES[:2], quiet=True)
    with pytest.raises(ConfigError, match="another schedule"):
        run_stages(_context(tmp_path), STAGES, quiet=True)


def test_without_run_dir_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state = run_stages(_context(None), STAGES[:2], quiet=True).state
    assert state.stage_index == 2 and list(tmp_path.iterdir()) == []


def test_anneal_state_save_and_reload_round_trip(tmp_path: Path) -> None:
    from townlet.policy.training.strategies.anneal.io import load_anneal_state, save_anneal_state

    state = run_stages(_context(None), STAGES[:2], quiet=True).state
    save_anneal_state(tmp_path, state, stages=STAGES[:2], telemetry_lines=7)
    data = read_run_state(tmp_path)
    assert data is not None and data["telemetry_lines"] == 7
    loaded = load_anneal_state(tmp_path, data)
    assert _without_durations(loaded.results) == _without_durations(state.results)
    assert (loaded.stage_index, loaded.seed, loaded.baselines) == (2, 5, state.baselines)
    assert loaded.last_bc == state.last_bc and loaded.rollout_returns == state.rollout_returns
    assert loaded.ppo_state is not None and state.ppo_state is not None
    assert loaded.ppo_state.steps == state.ppo_state.steps
    assert all(torch.equal(state.params[k], v) for k, v in loaded.params.items())  # type: ignore[index, union-attr]


def test_a_broken_run_state_is_a_checkpoint_error(tmp_path: Path) -> None:
    from townlet.errors import CheckpointError
    from townlet.policy.training.strategies.anneal.io import load_anneal_state

    (tmp_path / "run_state.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        read_run_state(tmp_path)
    with pytest.raises(CheckpointError, match="invalid run state"):
        load_anneal_state(tmp_path, {"seed": 0})
