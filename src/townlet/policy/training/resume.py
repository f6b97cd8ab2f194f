"""Periodic checkpoints of a training run and the resume of an interrupted one (issue #17).

A resumable run writes ``run.json`` (:mod:`~townlet.policy.training.run_dir`) when it starts
and, every ``every`` steps of its fold (epochs for BC and replay PPO), ``resume.pt``: the whole
fold state (parameters, Adam moments and steps, counters; the run's RNG derives from the seed
and these counters) plus the count of steps done and the telemetry files' sizes. Everything the
next step depends on is there, so a resumed run ends bit-identical to an uninterrupted one.
The file goes through :func:`~townlet.policy.nn.checkpoint.save_checkpoint` (temp file +
rename), so a kill leaves the previous checkpoint or the new one. A finished run removes it.

Torch is imported only when a checkpoint is saved or loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from townlet.errors import ConfigError
from townlet.policy.training.fold import Sink
from townlet.policy.training.resume_log import cut_logs, log_after, log_sizes
from townlet.policy.training.run_dir import RunRecord
from townlet.policy.training.telemetry_log import TelemetryLog

STATE_FILE = "resume.pt"


@attrs.frozen(kw_only=True)
class LogSettings:
    """The telemetry log of a run, as ``open_log`` gets it (None ``path``: no log)."""

    path: Path | None = None
    log_frequency: int = 1
    max_entries: int | None = None

    def position(self, written: int) -> TelemetryLog | None:
        """The log after ``written`` records (None without a log)."""
        if self.path is None:
            return None
        limit = self.max_entries if self.max_entries is not None and self.max_entries > 0 else None
        log = TelemetryLog(path=self.path, log_frequency=self.log_frequency, max_entries=limit)
        return log_after(log, written)


@attrs.frozen(kw_only=True, eq=False)
class ResumePoint:
    """Where a resumed run starts: ``done`` steps ran and ``state`` is the fold state then."""

    done: int
    state: Any


def _save(kind: str, path: Path, state: Any, extra: Mapping[str, Any]) -> None:
    if kind == "ppo":
        from townlet.policy.training.strategies.ppo.checkpoint import save_ppo_state

        save_ppo_state(path, state, extra=extra)
        return
    from townlet.policy.nn.checkpoint import save_checkpoint

    save_checkpoint(
        path,
        spec=state.spec,
        params=state.params,
        adam_state=state.adam_state,
        counters={"seed": int(state.seed), "updates": int(state.updates)},
        extra={"kind": kind, **extra},
    )


def checkpoint_sink(
    out: str | os.PathLike[str],
    *,
    every: int,
    total: int,
    kind: str,
    run: RunRecord,
    log: LogSettings,
) -> Sink:
    """A fold sink saving ``out/resume.pt`` after every ``every``-th step (the last step is
    not saved: the run then writes its outputs and removes the file). ``kind`` is ``"bc"``,
    ``"ppo"`` (the state record the fold carries) or ``"ppo_online"`` (the fold carries
    ``(PPOState, observations)``; see :mod:`~townlet.policy.training.online_resume`). Must run
    after the telemetry sink."""
    if every < 1:
        raise ConfigError(f"checkpoint_every must be >= 1, got {every!r}")
    path, run_id = Path(out) / STATE_FILE, run.run_id

    def extra(index: int) -> dict[str, Any]:
        position = log.position(index)
        sizes = None if position is None else log_sizes(position)
        return {"resume": {"done": index, "run_id": run_id, "log": sizes}}

    if kind == "ppo_online":
        from townlet.policy.training.online_resume import online_checkpoint_sink

        return online_checkpoint_sink(
            Path(out),
            every=every,
            total=total,
            extra=extra,
            save=lambda target, state, info: _save("ppo", target, state, info),
        )

    def sink(index: int, state: Any, output: Any) -> None:
        if index % every != 0 or index >= total:
            return
        _save(kind, path, state, extra(index))

    return sink


def _load_state(kind: str, path: Path, device: str) -> tuple[Any, Mapping[str, Any]]:
    from townlet.policy.nn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path, map_location=device)
    if kind in ("ppo", "ppo_online"):
        from townlet.policy.training.strategies.ppo.checkpoint import load_ppo_state

        return load_ppo_state(path, map_location=device), checkpoint.extra
    from townlet.policy.nn.adam import adam_init
    from townlet.policy.training.strategies.bc.step import BCState

    counters = checkpoint.counters
    state = BCState(
        spec=checkpoint.spec,
        params=checkpoint.params,
        adam_state=checkpoint.adam_state or adam_init(checkpoint.params),
        seed=int(counters.get("seed", 0)),
        updates=int(counters.get("updates", 0)),
    )
    return state, checkpoint.extra


def load_resume_point(
    out: str | os.PathLike[str],
    *,
    kind: str,
    run: RunRecord,
    log: LogSettings,
    device: str = "cpu",
) -> ResumePoint | None:
    """The last checkpoint of the run in ``out`` (None: killed before the first one), its
    telemetry cut back to what the checkpoint had seen. Raises ``ConfigError`` for a
    checkpoint of another run."""
    path = Path(out) / STATE_FILE
    if not path.is_file():
        if kind == "ppo_online":  # killed before its first checkpoint: start over
            from townlet.policy.training.online_resume import ENV_FILE

            (Path(out) / ENV_FILE).unlink(missing_ok=True)
        return None
    state, extra = _load_state(kind, path, device)
    info = extra.get("resume")
    if not isinstance(info, dict) or info.get("run_id") != run.run_id:
        raise ConfigError(f"{path}: checkpoint of another run than {Path(out) / 'run.json'}")
    done = info.get("done")
    if isinstance(done, bool) or not isinstance(done, int) or done < 1:
        raise ConfigError(f"{path}: resume.done must be an integer >= 1, got {done!r}")
    if kind == "ppo_online":
        state = _online_start(Path(out), state, extra, done)
    sizes = info.get("log")
    if isinstance(sizes, dict) and sizes and log.path is not None:
        cut_logs(log.path, {str(k): int(v) for k, v in sizes.items()})
    return ResumePoint(done=done, state=state)


def _online_start(out: Path, state: Any, extra: Mapping[str, Any], done: int) -> Any:
    from townlet.policy.training.online_resume import OnlineStart, load_env_history

    info = extra.get("online")
    updates = load_env_history(out, info, done)
    assert isinstance(info, dict)  # load_env_history refuses anything else
    return OnlineStart(
        state=state, updates=updates, observations_sha256=str(info.get("observations_sha256"))
    )
