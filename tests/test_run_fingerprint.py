"""Only the same run resumes in a run directory: the fingerprint, its mismatch error, overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from townlet.cli import main
from townlet.config import AnnealStage, BCConfig, Config, PPOConfig, TrainingConfig
from townlet.errors import ConfigError
from townlet.policy.rollout import capture_rollout
from townlet.policy.training.run_fingerprint import (
    FINGERPRINT_FILE,
    RunMismatchError,
    check_run_dir,
    clear_run_dir,
    fingerprint_differences,
    read_fingerprint,
    run_fingerprint,
)
from townlet.policy.training.strategies.anneal_step import AnnealData, RolloutPlan
from townlet.world import WorldConfig

WORLD = WorldConfig(num_agents=3)
STAGES = (
    AnnealStage(cycle=0, mode="bc"),
    AnnealStage(cycle=1, mode="ppo", epochs=1, bc_weight=0.5),
)


def _config(**ppo: float) -> Config:
    return Config(
        ppo=PPOConfig(**ppo),
        training=TrainingConfig(
            bc=BCConfig(epochs=1), anneal_accuracy_threshold=0.1, anneal_schedule=STAGES
        ),
        world=WORLD,
    )


@pytest.fixture(scope="module")
def demos() -> list[object]:
    return list(capture_rollout(WORLD, "scripted", 30, 0).samples)


def _data(demos: list[object], ticks: int = 20) -> AnnealData:
    return AnnealData(bc=demos, rollout=RolloutPlan(world=WORLD, ticks=ticks))  # type: ignore[arg-type]


def test_fingerprint_names_what_determines_the_result(demos: list[object]) -> None:
    base = run_fingerprint(_config(), STAGES, _data(demos), 0)
    assert base["seed"] == 0 and base["config.ppo.learning_rate"] == 3e-4
    assert base["data.rollout.ticks"] == 20 and str(base["data.bc"]).startswith("sha256:")
    assert "townlet_version" in base and not any(k.startswith("config.promotion") for k in base)
    changed = run_fingerprint(_config(learning_rate=1e-3), STAGES, _data(demos, 30), 1)
    assert list(fingerprint_differences(base, changed)) == [
        "config.ppo.learning_rate",
        "data.rollout.ticks",
        "seed",
    ]
    other_demos = list(capture_rollout(WORLD, "scripted", 30, 1).samples)
    assert list(fingerprint_differences(base, run_fingerprint(
        _config(), STAGES, _data(other_demos), 0
    ))) == ["data.bc"]  # fmt: skip
    # Same inputs, same fingerprint (what makes a rerun resume).
    assert run_fingerprint(_config(), STAGES, _data(demos), 0) == base


def test_manifest_identity_covers_the_sample_files(tmp_path: Path) -> None:
    capture_rollout(WORLD, "scripted", 10, 0).save(tmp_path)
    manifest = tmp_path / "rollout_sample_manifest.json"
    data = AnnealData(bc=manifest)
    before = run_fingerprint(_config(), STAGES, data, 0)
    files = before["data.bc"]
    assert files[0]["path"] == str(manifest.resolve())
    assert len(files) > 1 and all({"path", "bytes", "sha256"} == set(f) for f in files)
    sample = Path(files[1]["path"])
    sample.write_bytes(sample.read_bytes() + b"\0")  # same path, other content
    after = run_fingerprint(_config(), STAGES, data, 0)
    assert list(fingerprint_differences(before, after)) == ["data.bc"]


def test_check_run_dir_records_then_refuses_another_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    check_run_dir(run, {"seed": 0, "config.ppo.gamma": 0.99})
    assert read_fingerprint(run) == {"seed": 0, "config.ppo.gamma": 0.99}
    check_run_dir(run, {"seed": 0, "config.ppo.gamma": 0.99})  # the same run: fine
    with pytest.raises(RunMismatchError) as caught:
        check_run_dir(run, {"seed": 1, "config.ppo.gamma": 0.99})
    error = caught.value
    assert isinstance(error, ConfigError) and error.differences == {"seed": (0, 1)}
    assert "seed: 0 -> 1" in str(error)
    assert "overwrite=True" in str(error) and "new run_dir" in str(error)
    assert "--out NEW" in error.cli_message() and "--overwrite" in error.cli_message()
    assert "overwrite=True" not in error.cli_message()


def test_a_run_directory_without_fingerprint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run_state.json").write_text("{}")
    with pytest.raises(RunMismatchError, match=r"run_fingerprint: .*older townlet"):
        check_run_dir(tmp_path, {"seed": 0})


def test_bad_fingerprint_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / FINGERPRINT_FILE).write_text('{"keys": 3}')
    with pytest.raises(ConfigError, match=f"{FINGERPRINT_FILE}: field 'keys'"):
        read_fingerprint(tmp_path)


def test_clear_run_dir_keeps_the_promotion_state(tmp_path: Path) -> None:
    for name in ("run_state.json", "telemetry.jsonl", "promotion.json", FINGERPRINT_FILE):
        (tmp_path / name).write_text("{}")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "stage_001.pt").write_bytes(b"x")
    clear_run_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["promotion.json"]


def test_changed_run_is_refused_and_overwrite_starts_again(
    tmp_path: Path, demos: list[object]
) -> None:
    pytest.importorskip("torch")
    from townlet.policy.training.strategies.anneal import run_anneal

    plan = RolloutPlan(world=WORLD, ticks=20)
    first = run_anneal(_config(), bc_data=demos, rollout=plan, out_dir=tmp_path, quiet=True)  # type: ignore[arg-type]
    again = run_anneal(_config(), bc_data=demos, rollout=plan, out_dir=tmp_path, quiet=True)  # type: ignore[arg-type]
    assert [attrs.evolve(r, duration_sec=None) for r in again.stages] == [
        attrs.evolve(r, duration_sec=None) for r in first.stages
    ]
    with pytest.raises(RunMismatchError, match=r"config\.ppo\.learning_rate: 0\.0003 -> 0\.001"):
        run_anneal(_config(learning_rate=1e-3), bc_data=demos, rollout=plan, out_dir=tmp_path)  # type: ignore[arg-type]
    changed = run_anneal(
        _config(learning_rate=1e-3),
        bc_data=demos,  # type: ignore[arg-type]
        rollout=plan,
        out_dir=tmp_path,
        quiet=True,
        overwrite=True,
    )
    assert changed.stages[1].loss_total != first.stages[1].loss_total  # really trained again
    recorded = read_fingerprint(tmp_path)
    assert recorded is not None and recorded["config.ppo.learning_rate"] == 1e-3


def test_cli_names_the_differing_keys_and_the_cli_way_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    capture = tmp_path / "cap"
    capture_rollout(WORLD, "scripted", 30, 0).save(capture)
    config = tmp_path / "anneal.toml"
    config.write_text(
        "[world]\nnum_agents = 3\n[training]\nanneal_accuracy_threshold = 0.1\n"
        "[training.bc]\nepochs = 1\n[[training.anneal_schedule]]\ncycle = 0\nmode = 'bc'\n"
        "[[training.anneal_schedule]]\ncycle = 1\nmode = 'ppo'\nbc_weight = 0.5\n"
    )
    out = tmp_path / "run"
    manifest = str(capture / "rollout_sample_manifest.json")
    argv = ["anneal", "--config", str(config), "--rollout-ticks", "20", "--quiet",
            "--bc-manifest", manifest, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed: 0 -> 3" in err
    assert "--out NEW" in err and "--overwrite" in err and "overwrite=True" not in err
    assert main([*argv, "--seed", "3", "--overwrite"]) == 0
    assert json.loads((out / FINGERPRINT_FILE).read_text())["keys"]["seed"] == 3
