"""``townlet.compat``: the reference's orchestrator API as a thin adapter over the functional
API — each method gives what the function it wraps gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from townlet.compat import (  # noqa: E402
    PolicyTrainingOrchestrator,
    PPOTrainingResultDTO,
    TrainingHarness,
)
from townlet.config import (  # noqa: E402
    AnnealStage,
    BCConfig,
    Config,
    SocialRewardScheduleEntry,
    TrainingConfig,
)
from townlet.dto.policy import PPOTrainingResult  # noqa: E402
from townlet.errors import ConfigError  # noqa: E402
from townlet.policy.replay import (  # noqa: E402
    ReplayDataset,
    ReplayDatasetConfig,
    build_batch,
    load_replay_sample,
)
from townlet.policy.replay.batch import summarize_batch  # noqa: E402
from townlet.policy.training.strategies.ppo import train_ppo  # noqa: E402
from townlet.world import WorldConfig  # noqa: E402

WORLD = WorldConfig(num_agents=3)


def _config(**training: Any) -> Config:
    return Config(seed=3, world=WORLD, training=TrainingConfig(**training))


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compat") / "cap"
    PolicyTrainingOrchestrator(_config()).capture_rollout(12, output_dir=out)
    return out


def _without_durations(record: PPOTrainingResult) -> dict[str, Any]:
    out = record.model_dump()
    out.pop("duration_sec")
    out.pop("epoch_duration_sec")
    return out


def test_run_ppo_is_train_ppo_and_continues_the_run(capture: Path) -> None:
    config = ReplayDatasetConfig.from_capture_dir(capture, batch_size=3)
    orchestrator = TrainingHarness(_config())
    first = orchestrator.run_ppo(config, epochs=2)
    direct = train_ppo(ReplayDataset(config), cfg=Config().ppo, epochs=2, seed=3)
    assert isinstance(first, PPOTrainingResultDTO)
    assert _without_durations(first) == _without_durations(direct.result)
    assert first.model_dump() == first.to_dict()
    second = orchestrator.run_ppo(config, epochs=1)
    assert second.steps == first.steps + first.transitions  # counters go on, as in one context
    orchestrator.reset_ppo()
    assert orchestrator.run_ppo(config).steps == first.transitions
    with pytest.raises(ConfigError, match="dataset_config is required"):
        orchestrator.run_ppo()


def test_run_rollout_ppo_uses_the_next_cycles_social_stage(tmp_path: Path) -> None:
    schedule = (
        SocialRewardScheduleEntry(cycle=0, stage="C1"),
        SocialRewardScheduleEntry(cycle=1, stage="C3"),
    )
    orchestrator = PolicyTrainingOrchestrator(_config(social_reward_schedule=schedule))
    assert orchestrator.capture_rollout(5).social_stage == "C1"
    result = orchestrator.run_rollout_ppo(ticks=6, batch_size=3, output_dir=tmp_path / "r")
    assert result.data_mode == "rollout" and result.cycle_id == 0.0
    assert (tmp_path / "r" / "rollout_sample_manifest.json").is_file()
    assert orchestrator.capture_rollout(5).social_stage == "C3"  # cycle 1 next


def test_run_replay_prints_and_returns_the_batch_summary(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample_path = sorted(capture.glob("*_001.npz"))[0]
    summary = PolicyTrainingOrchestrator(_config()).run_replay(sample_path)
    expected = summarize_batch(build_batch([load_replay_sample(sample_path)]))
    assert summary == expected
    assert capsys.readouterr().out.startswith("Replay sample loaded: {'batch': 1.0")
    pairs = [(p, None) for p in sorted(capture.glob("*.npz"))]
    last = PolicyTrainingOrchestrator(_config()).run_replay_batch(pairs)
    assert last["batch_size"] == float(len(pairs))
    assert "Replay batch 1:" in capsys.readouterr().out


def test_bc_and_anneal_delegate_and_keep_status(capture: Path, tmp_path: Path) -> None:
    manifest = capture / "rollout_sample_manifest.json"
    schedule = (AnnealStage(cycle=0, mode="bc"), AnnealStage(cycle=1, mode="ppo", epochs=1))
    config = _config(
        bc=BCConfig(epochs=1, manifest=manifest),
        anneal_schedule=schedule,
        anneal_accuracy_threshold=0.0,
        anneal_loss_tolerance=1e9,
    )
    orchestrator = PolicyTrainingOrchestrator(config)
    bc = orchestrator.run_bc_training()
    assert bc.model_dump()["epochs"] == 1 and orchestrator.bc_run is not None
    summary = orchestrator.run_anneal(
        dataset_config=ReplayDatasetConfig.from_capture_dir(capture), log_dir=tmp_path / "a"
    )
    assert [s.mode for s in summary.stages] == ["bc", "ppo"]
    assert orchestrator.last_anneal_status() == summary.status == "PASS"
    assert orchestrator.promotion is not None and orchestrator.promotion.pass_streak == 1
    assert json.loads(json.dumps(summary.model_dump()))["status"] == "PASS"
    assert orchestrator.evaluate_anneal_results([{"mode": "bc", "passed": False}]) == "FAIL"
    with pytest.raises(ConfigError, match="BC manifest is required"):
        PolicyTrainingOrchestrator(_config()).run_bc_training()


def test_run_dispatch_and_anneal_ratio(tmp_path: Path) -> None:
    orchestrator = PolicyTrainingOrchestrator(_config())
    with pytest.raises(NotImplementedError, match="Training mode 'replay' is not supported"):
        orchestrator.run()
    orchestrator.set_anneal_ratio(1.7)
    assert orchestrator.current_anneal_ratio() == 1.0
    orchestrator.set_anneal_ratio(None)
    assert orchestrator.current_anneal_ratio() is None
    path = tmp_path / "c.toml"
    path.write_text("seed = 5\n")
    assert PolicyTrainingOrchestrator(path).config.seed == 5


def test_compat_imports_without_torch() -> None:
    script = (
        "import importlib.abc, sys\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, B())\n"
        "import townlet.compat, townlet.cli.run_cmd\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_reference_config_yaml_reads_with_one_warning(tmp_path: Path) -> None:
    from townlet.compat import ReferenceConfigWarning, load_reference_config

    path = tmp_path / "config_idle_v1.yaml"
    path.write_text(
        "config_id: v1.3.0\n"
        "features:\n  stages:\n    relationships: B\n    social_rewards: C1\n"
        "world:\n  grid_size: 48\n  num_agents: 2\n"
        "stability:\n  lateness_threshold: 3\n  promotion:\n    required_passes: 3\n"
        "ppo:\n  learning_rate: 0.001\n"
        "training:\n  source: mixed\n  anneal_enable_policy_blend: false\n"
        "  anneal_schedule:\n  - cycle: 0\n    mode: bc\n    epochs: 3\n"
    )
    with pytest.warns(ReferenceConfigWarning) as record:
        config = load_reference_config(path)
    assert len(record) == 1
    assert str(record[0].message).endswith(
        "dropped: config_id, world.grid_size, training.anneal_enable_policy_blend, "
        "stability.lateness_threshold, features.stages.relationships"
    )
    assert config.training.source == "mixed" and config.ppo.learning_rate == 0.001
    assert config.world.social_reward_stage == "C1" and config.world.num_agents == 2
    assert config.promotion.required_passes == 3
    assert config.training.anneal_schedule[0].epochs == 3


def test_own_env_example_runs(tmp_path: Path) -> None:
    pytest.importorskip("pettingzoo")
    import runpy

    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "own_env.py"
    module = runpy.run_path(str(example))
    module["main"](str(tmp_path / "corridor"))
    assert (tmp_path / "corridor" / "rollout_sample_ann_001.npz").is_file()
