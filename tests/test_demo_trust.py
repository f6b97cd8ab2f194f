"""The demo's results can be trusted: same run resumes, another is refused, several run seeds
compare fairly, a good candidate is promoted and a bad one held with its reason."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import attrs
import pytest

pytest.importorskip("torch")

from townlet.cli import main
from townlet.policy.training import demo
from townlet.policy.training.demo_seeds import run_demo_seeds
from townlet.policy.training.run_fingerprint import RunMismatchError

HAS_MPL = importlib.util.find_spec("matplotlib") is not None

TINY = demo.DemoSettings(
    agents=3,
    demo_ticks=60,
    bc_epochs=3,
    bc_patience=2,
    cycles=2,
    ppo_epochs=1,
    rollout_ticks=30,
    critic_warmup_epochs=1,
    eval_episodes=3,
    eval_ticks=30,
    bc_threshold=0.1,
)
# A candidate that is its teacher (no effective update) is as good as BC on every paired
# episode; a learning rate of 0.5 wrecks the policy.
GOOD = attrs.evolve(TINY, learning_rate=1e-12)
BAD = attrs.evolve(TINY, learning_rate=0.5, ppo_epochs=4, eval_episodes=6, eval_ticks=60)


def test_rerun_resumes_and_another_run_is_refused(tmp_path: Path) -> None:
    first = demo.run_demo(tmp_path, seed=1, settings=TINY, quiet=True, plot=False)
    promotion = json.loads((tmp_path / "promotion.json").read_text())
    again = demo.run_demo(tmp_path, seed=1, settings=TINY, quiet=True, plot=False)
    assert again["returns"] == first["returns"]  # the same run, resumed: the same result
    rerun = json.loads((tmp_path / "promotion.json").read_text())
    assert rerun["evaluations"] == promotion["evaluations"] + 1
    assert rerun["counted_evidence"] == promotion["counted_evidence"]  # not a second pass
    with pytest.raises(RunMismatchError, match=r"config\.ppo\.learning_rate") as caught:
        demo.run_demo(tmp_path, seed=1, settings=attrs.evolve(TINY, learning_rate=1e-3),
                      quiet=True, plot=False)  # fmt: skip
    assert "overwrite=True" in str(caught.value)
    changed = demo.run_demo(tmp_path, seed=1, settings=attrs.evolve(TINY, learning_rate=1e-3),
                            quiet=True, plot=False, overwrite=True)  # fmt: skip
    assert changed["settings"]["learning_rate"] == 1e-3


def test_cli_refuses_another_run_with_the_cli_way_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "QUICK", TINY)
    argv = ["demo", "--out", str(tmp_path), "--seed", "1", "--quiet", "--no-plot"]
    assert main([*argv, "--quick"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(demo, "QUICK", attrs.evolve(TINY, cycles=3))
    assert main([*argv, "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "schedule" in err
    assert "--out NEW" in err and "--overwrite" in err
    assert main([*argv, "--quick", "--overwrite"]) == 0


def test_good_candidate_is_promoted(tmp_path: Path) -> None:
    summary = demo.run_demo(tmp_path, seed=0, settings=GOOD, quiet=True, plot=False)
    assert summary["returns"]["final_vs_bc"]["passed"] is True
    assert summary["anneal"]["status"] == "PASS"
    assert summary["promotion"]["decision"] == "PROMOTE"
    assert summary["promotion"]["state"] == "promoted"
    state = json.loads((tmp_path / "promotion.json").read_text())
    assert state["state"] == "promoted"
    assert state["current_release"]["checkpoint"] == str((tmp_path / "checkpoint.pt").resolve())
    again = demo.run_demo(tmp_path, seed=0, settings=GOOD, quiet=True, plot=False)
    assert again["promotion"]["decision"] == "PROMOTE"
    assert again["promotion"]["reasons"] == ["already_promoted"]
    history = json.loads((tmp_path / "promotion.json").read_text())["history"]
    assert [e["event"] for e in history].count("promoted") == 1  # not promoted twice


def test_bad_candidate_is_held_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "QUICK", BAD)
    argv = ["demo", "--quick", "--out", str(tmp_path), "--seed", "0", "--quiet", "--no-plot"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["promotion"]["decision"] == "HOLD"
    assert "behaviour_gate_failed" in summary["promotion"]["reasons"]
    assert "promotion: HOLD (" in out and "behaviour gate failed" in out
    assert json.loads((tmp_path / "promotion.json").read_text())["state"] != "promoted"


def test_several_seeds_compare_fairly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    aggregate = run_demo_seeds(
        tmp_path, seeds=(0, 1), settings=TINY, jobs=1, plot=False, report=lines.append
    )
    assert aggregate["seeds"] == [0, 1] and [r["seed"] for r in aggregate["runs"]] == [0, 1]
    for seed, run in zip((0, 1), aggregate["runs"], strict=True):
        single = json.loads((tmp_path / f"seed_{seed}" / "summary.json").read_text())
        assert run["final_mean"] == single["returns"]["final_mean"]
        assert run["final_vs_bc"]["lower_bound"] == single["returns"]["final_vs_bc"]["lower_bound"]
    pooled = aggregate["pooled"]["final_vs_bc"]
    assert pooled["episodes"] == 6 and pooled["ci95"][0] <= pooled["mean_difference"]
    verdict = aggregate["verdict"]
    assert verdict["beats_bc_every_seed"] == all(
        r["final_vs_bc"]["lower_bound"] > 0 for r in aggregate["runs"]
    )
    assert json.loads((tmp_path / "summary.json").read_text()) == aggregate
    assert lines[0].startswith("seed 0: BC ") and lines[1].startswith("seed 1: BC ")


def test_cli_seeds_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seeds", "0,x"]) == 2
    assert "--seeds: expected comma-separated integers" in capsys.readouterr().err
    assert main(["demo", "--seeds", "1,1"]) == 2
    assert "distinct seeds" in capsys.readouterr().err
    assert main(["demo", "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err


@pytest.mark.slow  # two spawned processes import torch
def test_cli_runs_seeds_in_parallel_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "QUICK", TINY)
    argv = ["demo", "--quick", "--seeds", "0,1", "--jobs", "2", "--out", str(tmp_path),
            "--quiet", "--no-plot"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"townlet demo -> {tmp_path} (seeds 0,1, 2 in parallel")
    assert "beats plateau BC on every seed:" in out
    sequential = run_demo_seeds(tmp_path / "seq", seeds=(0, 1), settings=TINY, jobs=1, plot=False)
    parallel = json.loads((tmp_path / "summary.json").read_text())
    assert [r["final_mean"] for r in parallel["runs"]] == [
        r["final_mean"] for r in sequential["runs"]
    ]


def _fake_summary(seed: int, gain: float) -> dict[str, object]:
    from townlet.policy.evaluate import PolicyEvaluation
    from townlet.policy.training.demo_stats import returns_block

    base = [-100.0, -90.0, -110.0, -95.0]
    offsets = {"random": -80.0, "bc": 0.0, "final": gain, "scripted": 10.0}
    runs = {
        name: PolicyEvaluation(
            returns=[b + off + i for i, b in enumerate(base)],
            lengths=[50] * 4,
            seeds=[1, 2, 3, 4],
            env="town",
            deterministic=False,
        )
        for name, off in offsets.items()
    }
    return {
        "seed": seed,
        "bc": {"best_epoch": 3, "accuracy": 0.8},
        "returns": returns_block(runs),
        "rollout_returns": [-300.0, -250.0],
        "anneal": {"status": "PASS"},
        "promotion": {"decision": "PROMOTE" if gain > 0 else "HOLD", "reasons": []},
    }


def test_seeds_summary_and_its_picture(tmp_path: Path) -> None:
    from townlet.cli.demo_cmd import seeds_human_summary
    from townlet.policy.training.demo_seeds import seeds_summary

    summaries = [_fake_summary(0, 20.0), _fake_summary(1, -5.0)]
    aggregate = seeds_summary(summaries, TINY)
    assert aggregate["runs"][0]["final_vs_bc"]["mean_difference"] == pytest.approx(20.0)
    assert aggregate["runs"][0]["final_vs_bc"]["lower_bound"] == pytest.approx(20.0)  # no spread
    assert aggregate["pooled"]["final_vs_bc"]["mean_difference"] == pytest.approx(7.5)
    assert aggregate["pooled"]["final_vs_bc"]["episodes"] == 8
    assert aggregate["verdict"] == {
        "beats_bc_every_seed": False,
        "beats_scripted_every_seed": False,
        "above_scripted_mean_every_seed": False,
        "promoted": 1,
    }
    aggregate.update(jobs=2, wall_sec=1.0)
    text = seeds_human_summary(tmp_path, aggregate)
    assert "beats plateau BC on every seed: no" in text and "seed 1: random" in text
    if HAS_MPL:
        from townlet.policy.training.demo_plot import write_seeds_plot

        assert write_seeds_plot(tmp_path, aggregate, summaries).is_file()


def test_demo_regularises_towards_the_expert_and_tunes_on_other_episodes(tmp_path: Path) -> None:
    from townlet.policy.rollout.sources import episode_seed

    assert demo.demo_config(TINY, 0).training.anneal_bc_target == "demos"
    off = attrs.evolve(TINY, demo_bc=False)
    assert demo.demo_config(off, 0).training.anneal_bc_target == "rollout"
    tuning = attrs.evolve(TINY, eval_seed_offset=7000)
    summary = demo.run_demo(tmp_path, seed=1, settings=tuning, quiet=True, plot=False)
    assert summary["returns"]["seeds"] == [episode_seed(7001, i) for i in range(3)]
    assert summary["settings"]["eval_seed_offset"] == 7000
    telemetry = [json.loads(line) for line in (tmp_path / "telemetry.jsonl").open()]
    trained = [r for r in telemetry if not r.get("critic_warmup")]
    assert trained and all(r["bc_coef"] > 0 and r["loss_bc"] > 0 for r in trained)
    with pytest.raises(ValueError, match="eval_seed_offset"):
        attrs.evolve(TINY, eval_seed_offset=0)
