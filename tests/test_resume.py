"""Resumable runs (#17): ``--checkpoint-every`` + ``townlet-train resume DIR`` end with the same
parameters, result and telemetry (durations aside) as an uninterrupted run, wherever the run
was interrupted."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from _replay_helpers import PHASE4, reference_root
from townlet.cli import main

torch = pytest.importorskip("torch")

_DURATIONS = ("duration_sec", "epoch_duration_sec")


class KilledError(Exception):
    """Stands for a kill: raised from the progress callback after k epochs."""


def _bc_argv(root: Path, out: Path, epochs: int) -> list[str]:
    manifest = root / "data" / "bc_datasets" / "manifests" / "idle_v1.json"
    return [
        "bc", "--manifest", str(manifest), "--root", str(root), "--epochs", str(epochs),
        "--val-fraction", "0.25", "--batch-size", "64", "--out", str(out), "--quiet",
        "--seed", "5",
    ]  # fmt: skip


def _ppo_argv(out: Path, epochs: int, log: Path) -> list[str]:
    return [
        "ppo", "--capture-dir", str(PHASE4 / "queue_conflict"), "--epochs", str(epochs),
        "--batch-size", "3", "--ppo-mini-batch-size", "64", "--log", str(log),
        "--log-max-entries", "4", "--log-frequency", "2", "--out", str(out), "--quiet",
        "--seed", "2",
    ]  # fmt: skip


@contextmanager
def _interrupt_after(monkeypatch: pytest.MonkeyPatch, module: str, k: int) -> Iterator[None]:
    class Bar:
        done = 0

        def update(self, n: int) -> None:
            Bar.done += n
            if Bar.done >= k:
                raise KilledError(k)

        def set_postfix(self, **kwargs: Any) -> None:
            pass

    @contextmanager
    def fake(total: int, *, quiet: bool, desc: str) -> Iterator[Bar]:
        yield Bar()

    with monkeypatch.context() as patch:
        patch.setattr(f"townlet.cli.{module}.progress_bar", fake)
        yield


def _telemetry(log: Path) -> dict[str, list[dict[str, Any]]]:
    files = sorted(log.parent.glob(log.name + "*"))
    return {
        f.name: [
            {k: v for k, v in json.loads(line).items() if k not in _DURATIONS}
            for line in f.read_text().splitlines()
        ]
        for f in files
    }


def _outcome(out: Path, log: Path | None = None) -> dict[str, Any]:
    from townlet.policy.nn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(out / "checkpoint.pt")
    adam = checkpoint.adam_state
    result = json.loads((out / "result.json").read_text())
    return {
        "params": {k: v.numpy().tobytes() for k, v in checkpoint.params.items()},
        "adam": None
        if adam is None
        else (
            dict(adam.steps),
            {k: v.numpy().tobytes() for k, v in adam.exp_avg.items()},
            {k: v.numpy().tobytes() for k, v in adam.exp_avg_sq.items()},
        ),
        "counters": dict(checkpoint.counters),
        "result": {k: v for k, v in result.items() if k not in _DURATIONS},
        "telemetry": None if log is None else _telemetry(log),
        "files": sorted(p.name for p in out.iterdir() if p.name != "run.json"),
    }


EPOCHS = 12
ALL_MOMENTS = tuple(range(1, EPOCHS))  # 11 moments: after each epoch but the last
FEW_MOMENTS = tuple(sorted(random.Random(17).sample(ALL_MOMENTS, 3)))


def _bc_each_moment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moments: tuple[int, ...]
) -> None:
    root = reference_root()
    assert main(_bc_argv(root, tmp_path / "full", EPOCHS)) == 0
    expected = _outcome(tmp_path / "full")
    for k in moments:
        out = tmp_path / f"k{k}"
        argv = [*_bc_argv(root, out, EPOCHS), "--checkpoint-every", "3"]
        with _interrupt_after(monkeypatch, "bc_cmd", k), pytest.raises(KilledError):
            main(argv)
        assert (out / "run.json").is_file()
        assert (out / "resume.pt").is_file() == (k >= 3), k  # saved before the kill at 3
        assert main(["resume", str(out), "--quiet"]) == 0
        assert _outcome(out) == expected, k


def _ppo_each_moment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moments: tuple[int, ...]
) -> None:
    reference_root()
    full_log = tmp_path / "full" / "log" / "ppo.jsonl"
    assert main(_ppo_argv(tmp_path / "full", EPOCHS, full_log)) == 0
    expected = _outcome(tmp_path / "full", full_log)
    assert len(expected["telemetry"]) == 2  # 6 lines rotated after 4: the cut covers rotation
    for k in moments:
        out, log = tmp_path / f"k{k}", tmp_path / f"k{k}" / "log" / "ppo.jsonl"
        argv = [*_ppo_argv(out, EPOCHS, log), "--checkpoint-every", "5"]
        with _interrupt_after(monkeypatch, "ppo_cmd", k), pytest.raises(KilledError):
            main(argv)
        assert main(["resume", str(out), "--quiet"]) == 0
        assert _outcome(out, log) == expected, k


def test_bc_interrupted_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _bc_each_moment(monkeypatch, tmp_path, FEW_MOMENTS)
    capsys.readouterr()


def test_ppo_interrupted_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _ppo_each_moment(monkeypatch, tmp_path, FEW_MOMENTS)
    capsys.readouterr()


@pytest.mark.slow
def test_bc_interrupted_at_11_moments_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _bc_each_moment(monkeypatch, tmp_path, ALL_MOMENTS)
    capsys.readouterr()


@pytest.mark.slow
def test_ppo_interrupted_at_11_moments_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _ppo_each_moment(monkeypatch, tmp_path, ALL_MOMENTS)
    capsys.readouterr()


def test_python_resume_run_and_refusals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import townlet

    reference_root()
    out = tmp_path / "run"
    argv = [*_ppo_argv(out, 6, out / "t.jsonl"), "--checkpoint-every", "2"]
    with _interrupt_after(monkeypatch, "ppo_cmd", 3), pytest.raises(KilledError):
        main(argv)
    # Settings recorded differ from what resume would use: refused, nothing changed.
    run_json = json.loads((out / "run.json").read_text())
    run_json["settings"]["epochs"] = 7
    (out / "run.json").write_text(json.dumps(run_json))
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "settings differ from the recorded run (epochs); refusing" in err
    run_json["settings"]["epochs"] = 6
    run_json["fingerprint"] = "0" * 64
    (out / "run.json").write_text(json.dumps(run_json))
    assert main(["resume", str(out)]) == 2
    assert "the input data changed since the run started" in capsys.readouterr().err
    assert main(["resume", str(tmp_path / "nothing")]) == 2
    assert "no run record here" in capsys.readouterr().err
    # A clean rerun and a Python resume give the uninterrupted result.
    fresh = tmp_path / "fresh"
    assert main(_ppo_argv(fresh, 6, fresh / "t.jsonl")) == 0
    out2 = tmp_path / "run2"
    with _interrupt_after(monkeypatch, "ppo_cmd", 5), pytest.raises(KilledError):
        main([*_ppo_argv(out2, 6, out2 / "t.jsonl"), "--checkpoint-every", "2"])
    result = townlet.resume_run(out2)
    assert result["epoch"] == 6.0
    assert _outcome(out2, out2 / "t.jsonl")["params"] == _outcome(fresh)["params"]
    assert main(["resume", str(out2)]) == 2
    assert "this run already finished" in capsys.readouterr().err


def test_checkpoint_every_needs_out(capsys: pytest.CaptureFixture[str]) -> None:
    root = reference_root()
    argv = [a for a in _bc_argv(root, Path("x"), 2) if a not in ("--out", "x")]
    assert main([*argv, "--checkpoint-every", "1"]) == 2
    assert "--checkpoint-every needs --out DIR" in capsys.readouterr().err
    online = ["ppo", "--env", "gymnasium:CartPole-v1", "--total-steps", "8"]
    assert main([*online, "--checkpoint-every", "1"]) == 2
    assert "--checkpoint-every needs --out DIR" in capsys.readouterr().err


def _kill_at_random(argv: list[str], out: Path, rng: random.Random) -> None:
    # A real SIGKILL, some time after the first checkpoint appeared.
    code = "import sys; from townlet.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv])
    deadline = time.monotonic() + 120
    while not (out / "resume.pt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.5))
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bc", "ppo"])
def test_sigkill_then_resume_equals_uninterrupted(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = reference_root()
    rng = random.Random(17)

    def argv(out: Path) -> list[str]:
        if kind == "bc":
            return _bc_argv(root, out, 60)
        return _ppo_argv(out, 60, out / "t.jsonl")

    assert main(argv(tmp_path / "full")) == 0
    log = None if kind == "bc" else "t.jsonl"
    expected = _outcome(tmp_path / "full", None if log is None else tmp_path / "full" / log)
    out = tmp_path / "killed"
    _kill_at_random([*argv(out), "--checkpoint-every", "4"], out, rng)
    assert main(["resume", str(out), "--quiet"]) == 0
    assert _outcome(out, None if log is None else out / log) == expected
    capsys.readouterr()


def test_resume_dispatches_an_anneal_run_to_its_own_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from townlet.policy.rollout import capture_rollout, save_rollout
    from townlet.world import WorldConfig

    capture = tmp_path / "cap"
    save_rollout(capture_rollout(WorldConfig(num_agents=3), "scripted", 20, 0), capture)
    config = tmp_path / "anneal.toml"
    config.write_text(
        "seed = 1\n[world]\nnum_agents = 3\n[training.bc]\nepochs = 1\n"
        '[[training.anneal_schedule]]\ncycle = 0\nmode = "bc"\n'
        '[[training.anneal_schedule]]\ncycle = 1\nmode = "ppo"\n'
    )
    out = tmp_path / "run"
    manifest = capture / "rollout_sample_manifest.json"
    argv = ["anneal", "--config", str(config), "--capture-dir", str(capture),
            "--bc-manifest", str(manifest), "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert json.loads((out / "run.json").read_text())["command"] == "anneal"
    assert main(["resume", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["results"] == first["results"]
    config.write_text(config.read_text().replace("epochs = 1", "epochs = 2"))
    assert main(["resume", str(out)]) == 2
    assert "the input data changed since the run started" in capsys.readouterr().err


def test_resume_refuses_a_capture_dir_whose_files_changed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    reference_root()
    data = tmp_path / "qc"
    shutil.copytree(PHASE4 / "queue_conflict", data)
    out = tmp_path / "run"
    argv = [
        "ppo", "--capture-dir", str(data), "--epochs", "4", "--batch-size", "3",
        "--ppo-mini-batch-size", "64", "--out", str(out), "--quiet", "--checkpoint-every", "1",
    ]  # fmt: skip
    with _interrupt_after(monkeypatch, "ppo_cmd", 2), pytest.raises(KilledError):
        main(argv)
    sample = sorted(data.glob("*.npz"))[0]
    sample.write_bytes(sample.read_bytes())  # same bytes: still the same data
    assert main(["resume", str(out), "--quiet"]) == 0
    with _interrupt_after(monkeypatch, "ppo_cmd", 2), pytest.raises(KilledError):
        main(argv)
    (data / "extra_notes.txt").write_text("added after the run started\n")
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "run.json: the input data changed since the run started" in err
    assert (out / "resume.pt").is_file()  # nothing removed by the refusal
