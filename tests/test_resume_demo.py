"""``townlet-train resume DIR`` for the demo (#17): a demo interrupted anywhere — in process
after an anneal stage's checkpoint, or by a real SIGKILL — and continued with ``resume DIR``
(the run's ``--out``, or one seed's ``seed_<k>``) ends with the same summary, telemetry and
anneal results (timings aside) as an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from townlet.cli import main

pytest.importorskip("torch")

from townlet.policy.training import demo

TINY = demo.DemoSettings(
    agents=3,
    demo_ticks=60,
    bc_epochs=3,
    bc_patience=2,
    cycles=3,
    ppo_epochs=1,
    rollout_ticks=30,
    critic_warmup_epochs=1,
    eval_episodes=3,
    eval_ticks=30,
    bc_threshold=0.1,
)
_TIMINGS = ("wall_sec", "wall_seconds", "duration_sec", "epoch_duration_sec", "seconds")


class KilledError(Exception):
    """Stands for a kill: raised after the n-th anneal checkpoint was written."""


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _TIMINGS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _outcome(out: Path) -> dict[str, Any]:
    lines = (out / "telemetry.jsonl").read_text().splitlines()
    return {
        "summary": _strip(json.loads((out / "summary.json").read_text())),
        "telemetry": [_strip(json.loads(line)) for line in lines],
        "anneal": _strip(json.loads((out / "anneal_results.json").read_text())),
    }


def _argv(out: Path) -> list[str]:
    return ["demo", "--out", str(out), "--seed", "1", "--quick", "--quiet", "--no-plot"]


def _killing(orchestrator: Any, n: int) -> Any:
    save, calls = orchestrator.save_anneal_state, []

    def killing_save(*args: Any, **kwargs: Any) -> None:
        save(*args, **kwargs)
        calls.append(1)
        if len(calls) == n:
            raise KilledError(n)

    return killing_save


def test_demo_interrupted_after_each_stage_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from townlet.policy.training import orchestrator

    monkeypatch.setattr(demo, "QUICK", TINY)
    assert main(_argv(tmp_path / "full")) == 0
    expected = _outcome(tmp_path / "full")
    for n in (1, 3):  # after the critic warm-up's / the second PPO cycle's checkpoint
        out = tmp_path / f"cut{n}"
        with monkeypatch.context() as patch:
            patch.setattr(orchestrator, "save_anneal_state", _killing(orchestrator, n))
            with pytest.raises(KilledError):
                main(_argv(out))
        assert not (out / "summary.json").exists()
        assert json.loads((out / "run.json").read_text())["command"] == "demo"
        assert main(["resume", str(out), "--quiet"]) == 0
        assert _outcome(out) == expected, n
    capsys.readouterr()


def test_resume_of_a_demo_refuses_other_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "QUICK", TINY)
    out = tmp_path / "run"
    assert main(_argv(out)) == 0
    capsys.readouterr()
    monkeypatch.setattr(demo, "QUICK", attrs.evolve(TINY, cycles=4))
    assert main(["resume", str(out)]) == 2  # the run dir holds a run with another schedule
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "schedule" in err


_CHILD = """
import sys
from townlet.policy.training import demo
demo.QUICK = demo.DemoSettings(**{settings})
from townlet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _child(settings: demo.DemoSettings) -> str:

    return _CHILD.format(settings=repr(attrs.asdict(settings)))


@pytest.mark.slow
def test_demo_sigkill_at_random_moments_then_resume(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "QUICK", TINY)
    assert main(_argv(tmp_path / "full")) == 0
    expected = _outcome(tmp_path / "full")
    rng = random.Random(1719)
    code = _child(TINY)
    killed = 0
    for trial in range(4):
        out = tmp_path / f"killed{trial}"
        proc = subprocess.Popen([sys.executable, "-c", code, *_argv(out)])
        deadline = time.monotonic() + 300
        while not (out / "run_state.json").exists() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        if proc.wait() != -signal.SIGKILL:  # finished before the kill: nothing to resume
            continue
        killed += 1
        assert main(["resume", str(out), "--quiet"]) == 0
        assert _outcome(out) == expected, trial
    assert killed >= 2  # most kills land mid-run, not after it
    capsys.readouterr()


@pytest.mark.slow
def test_one_seed_of_a_multi_seed_demo_resumes_on_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "QUICK", TINY)
    argv = ["demo", "--out", str(tmp_path / "all"), "--seeds", "0,1", "--jobs", "1", "--quick"]
    assert main([*argv, "--quiet", "--no-plot"]) == 0
    expected = _outcome(tmp_path / "all" / "seed_1")
    seed_run = json.loads((tmp_path / "all" / "seed_1" / "run.json").read_text())
    assert seed_run["args"]["seed"] == 1 and seed_run["command"] == "demo"
    # Seed 1's directory loses its summary (as if killed at the end) and is resumed alone.
    (tmp_path / "all" / "seed_1" / "summary.json").unlink()
    assert main(["resume", str(tmp_path / "all" / "seed_1"), "--quiet"]) == 0
    assert _outcome(tmp_path / "all" / "seed_1") == expected
    assert main(["resume", str(tmp_path / "all"), "--quiet"]) == 0
    capsys.readouterr()
