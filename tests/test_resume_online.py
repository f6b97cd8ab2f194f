"""Resumable online PPO (#17): ``ppo --env ... --checkpoint-every N`` + ``resume DIR`` (and the
Python API) end with the same parameters, Adam state, counters, summary and telemetry
(durations aside) as an uninterrupted run, on CartPole and on the town; an environment that
does not come back when its actions are replayed is refused in one line."""

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

import numpy as np
import pytest

from townlet.cli import main
from townlet.errors import ConfigError

torch = pytest.importorskip("torch")
gymnasium = pytest.importorskip("gymnasium")

_DURATIONS = ("duration_sec", "epoch_duration_sec", "wall_seconds")
UPDATES = 12
ALL_MOMENTS = tuple(range(1, UPDATES))  # after each update but the last
FEW_MOMENTS = tuple(sorted(random.Random(17).sample(ALL_MOMENTS, 3)))


class KilledError(Exception):
    """Stands for a kill: raised from the progress bar after k updates."""


def _argv(out: Path, updates: int = UPDATES) -> list[str]:
    return [
        "ppo", "--env", "gymnasium:CartPole-v1", "--total-steps", str(updates * 2 * 16),
        "--num-envs", "2", "--rollout-steps", "16", "--ppo-num-epochs", "2",
        "--ppo-mini-batch-size", "16", "--hidden", "8", "--eval-episodes", "1",
        "--log-max-entries", "5", "--log-frequency", "2", "--out", str(out), "--quiet",
        "--seed", "3",
    ]  # fmt: skip


@contextmanager
def _interrupt_after(monkeypatch: pytest.MonkeyPatch, k: int) -> Iterator[None]:
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
        patch.setattr("townlet.cli._ppo_online.progress_bar", fake)
        yield


def _lines(path: Path) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in json.loads(line).items() if k not in _DURATIONS}
        for line in path.read_text().splitlines()
    ]


def _outcome(out: Path) -> dict[str, Any]:
    from townlet.policy.nn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(out / "checkpoint.pt")
    adam = checkpoint.adam_state
    assert adam is not None
    summary = json.loads((out / "summary.json").read_text())
    return {
        "params": {k: v.numpy().tobytes() for k, v in checkpoint.params.items()},
        "adam": (
            dict(adam.steps),
            {k: v.numpy().tobytes() for k, v in adam.exp_avg.items()},
            {k: v.numpy().tobytes() for k, v in adam.exp_avg_sq.items()},
        ),
        "counters": dict(checkpoint.counters),
        "summary": {k: v for k, v in summary.items() if k not in _DURATIONS},
        "telemetry": {f.name: _lines(f) for f in sorted(out.glob("telemetry.jsonl*"))},
        "files": sorted(p.name for p in out.iterdir() if p.name != "run.json"),
    }


def _each_moment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moments: tuple[int, ...]) -> None:
    assert main(_argv(tmp_path / "full")) == 0
    expected = _outcome(tmp_path / "full")
    assert len(expected["telemetry"]) == 2  # 6 lines rotated after 5: the cut covers rotation
    assert expected["summary"]["episodes"] > 0
    for k in moments:
        out = tmp_path / f"k{k}"
        with _interrupt_after(monkeypatch, k), pytest.raises(KilledError):
            main([*_argv(out), "--checkpoint-every", "3"])
        assert (out / "resume.pt").is_file() == (k >= 3), k
        assert main(["resume", str(out), "--quiet"]) == 0
        assert _outcome(out) == expected, k


def test_online_ppo_interrupted_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _each_moment(monkeypatch, tmp_path, FEW_MOMENTS)
    capsys.readouterr()


@pytest.mark.slow
def test_online_ppo_interrupted_at_11_moments_resumes_exactly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _each_moment(monkeypatch, tmp_path, ALL_MOMENTS)
    capsys.readouterr()


def test_online_resume_refuses_a_changed_env_history(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with _interrupt_after(monkeypatch, 5), pytest.raises(KilledError):
        main([*_argv(out), "--checkpoint-every", "2"])
    history = out / "resume_env.jsonl"
    assert len(history.read_text().splitlines()) == 4  # two checkpoints of two updates
    original = history.read_bytes()
    history.write_bytes(original.replace(b'"actions":[[0', b'"actions":[[1', 1))
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "resume_env.jsonl: changed since its checkpoint (sha256 differs); cannot resume"
    )
    assert len(err.splitlines()) == 1
    history.write_bytes(original + b'{"update": 5, "act')  # a kill mid-append: cut back
    assert main(["resume", str(out), "--quiet"]) == 0
    assert not history.exists() and not (out / "resume.pt").exists()
    assert main(["resume", str(out)]) == 2
    assert "this run already finished (see summary.json)" in capsys.readouterr().err


class _TownSingle(gymnasium.Env):  # type: ignore[misc]
    """The town seen by agent 0 (its 33 features), the others waiting: a Gymnasium env."""

    def __init__(self) -> None:
        from townlet.envs.pettingzoo_town import make_town_env
        from townlet.world import WorldConfig

        self.town = make_town_env(WorldConfig(num_agents=2, episode_length=40))
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (33,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(8)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict[str, Any]]:
        obs, _ = self.town.reset(seed=seed)
        return obs["agent_0"]["features"], {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, rew, term, trunc, _ = self.town.step({"agent_0": int(action)})
        return obs["agent_0"]["features"], rew["agent_0"], term["agent_0"], trunc["agent_0"], {}


class _Forgetful(gymnasium.Env):  # type: ignore[misc]
    """An environment whose reset ignores its seed: it cannot be restored by replay."""

    resets = 0

    def __init__(self) -> None:
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict[str, Any]]:
        _Forgetful.resets += 1
        self.t = 0
        return np.array([_Forgetful.resets % 7 / 7, 0.0], np.float32), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        reward = float(_Forgetful.resets % 3)  # depends on every reset so far, not on a seed
        return np.array([0.0, action], np.float32), reward, False, self.t >= 5, {}


def _python_run(
    factory: Any, out: Path, *, kill_at: int | None = None, resume: bool = False
) -> Any:
    """An online run through the Python API with checkpoints every 2 updates of 6."""
    from townlet.policy.training.resume import LogSettings, checkpoint_sink, load_resume_point
    from townlet.policy.training.run_dir import RunRecord
    from townlet.policy.training.strategies.ppo.online import OnlinePPOConfig, train_ppo_online

    run = RunRecord(command="ppo_online", args={}, settings={}, fingerprint="test")
    log = LogSettings(path=out / "t.jsonl")
    out.mkdir(parents=True, exist_ok=True)
    start = load_resume_point(out, kind="ppo_online", run=run, log=log) if resume else None

    def progress(update: int, record: Any) -> None:
        if update == kill_at:
            raise KilledError(update)

    settings = OnlinePPOConfig(total_steps=6 * 2 * 16, num_envs=2, rollout_steps=16, hidden_dim=8)
    return train_ppo_online(
        factory,
        online=settings,
        seed=4,
        log_path=log.path,
        progress=progress,
        sinks=(checkpoint_sink(out, every=2, total=6, kind="ppo_online", run=run, log=log),),
        start=None if start is None else start.state,
    )


def test_online_resume_through_the_python_api_on_the_town(tmp_path: Path) -> None:
    pytest.importorskip("pettingzoo")
    full = _python_run(_TownSingle, tmp_path / "full")
    assert full.episode_lengths and len(full.history) == 6
    with pytest.raises(KilledError):
        _python_run(_TownSingle, tmp_path / "cut", kill_at=5)
    resumed = _python_run(_TownSingle, tmp_path / "cut", resume=True)
    for name, value in full.params.items():
        assert torch.equal(resumed.params[name], value), name
    assert (resumed.episode_returns, resumed.episode_lengths) == (
        full.episode_returns,
        full.episode_lengths,
    )
    strip = [{k: v for k, v in r.to_dict().items() if k not in _DURATIONS} for r in full.history]
    again = [{k: v for k, v in r.to_dict().items() if k not in _DURATIONS} for r in resumed.history]
    assert again == strip
    assert _lines(tmp_path / "cut" / "t.jsonl") == _lines(tmp_path / "full" / "t.jsonl")


def test_online_resume_refuses_an_env_that_does_not_come_back(tmp_path: Path) -> None:
    with pytest.raises(KilledError):
        _python_run(_Forgetful, tmp_path / "run", kill_at=3)
    with pytest.raises(ConfigError) as info:
        _python_run(_Forgetful, tmp_path / "run", resume=True)
    message = str(info.value)
    assert "did not come back to its checkpointed state" in message
    assert "\n" not in message


@pytest.mark.slow
def test_online_sigkill_at_10_random_moments_then_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(1717)
    argv = _argv(tmp_path / "full", 60)
    assert main(argv) == 0
    expected = _outcome(tmp_path / "full")
    code = "import sys; from townlet.cli import main; sys.exit(main(sys.argv[1:]))"
    for trial in range(10):
        out = tmp_path / f"killed{trial}"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *_argv(out, 60), "--checkpoint-every", "4"]
        )
        deadline = time.monotonic() + 120
        while not (out / "resume.pt").exists() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, trial  # killed mid-run, not finished
        assert main(["resume", str(out), "--quiet"]) == 0
        assert _outcome(out) == expected, trial
    capsys.readouterr()
