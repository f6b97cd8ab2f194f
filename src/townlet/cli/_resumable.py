"""The resumable side of ``bc`` and ``ppo``: ``--checkpoint-every N`` and ``resume DIR``.

:func:`plan_run` is called by a training handler once its settings are resolved: a fresh run
writes ``run.json`` (:mod:`~townlet.policy.training.run_dir`); a resumed one checks it against
what the handler resolved again and loads the last checkpoint. The handler passes the plan's
``sinks`` and ``start`` to the driver and calls ``finish`` once its outputs are written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from townlet.cli import UsageError
from townlet.policy.training.fold import Sink
from townlet.policy.training.online_resume import ENV_FILE
from townlet.policy.training.resume import (
    STATE_FILE,
    LogSettings,
    ResumePoint,
    checkpoint_sink,
    load_resume_point,
)
from townlet.policy.training.resume_log import cut_logs, log_sizes
from townlet.policy.training.run_dir import (
    RunRecord,
    check_same_run,
    data_fingerprint,
    plain_args,
    read_run_record,
    write_run_record,
)


def add_checkpoint_option(parser: argparse.ArgumentParser, unit: str) -> None:
    """``--checkpoint-every N``."""
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help=f"save a resumable checkpoint into --out every N {unit} "
        "(continue an interrupted run with `townlet-train resume DIR`)",
    )


@attrs.frozen(kw_only=True, eq=False)
class RunPlan:
    """A run's checkpoint ``sinks`` and ``start`` point (both empty for a plain run)."""

    sinks: tuple[Sink, ...] = ()
    start: ResumePoint | None = None
    out: Path | None = None

    def finish(self) -> None:
        """The run's outputs are written: its checkpoint is no longer needed."""
        if self.out is not None:
            (self.out / STATE_FILE).unlink(missing_ok=True)
            (self.out / ENV_FILE).unlink(missing_ok=True)


def _record(
    args: argparse.Namespace, kind: str, settings: Mapping[str, Any], inputs: Iterable[Any]
) -> RunRecord:
    plain = {k: v for k, v in vars(args).items() if k != "resume_dir"}
    return RunRecord(
        command=kind,
        args=plain_args(plain),
        settings=json.loads(json.dumps(settings, default=str)),
        fingerprint=data_fingerprint(inputs, roots=(getattr(args, "root", None),)),
    )


def plan_run(
    args: argparse.Namespace,
    *,
    kind: str,
    total: int,
    settings: Mapping[str, Any],
    inputs: Iterable[Any],
    log: LogSettings,
    device: str,
    writer: bool = True,
    result_name: str = "result.json",
) -> RunPlan:
    """Write ``run.json`` for a fresh resumable run, or check it and load the last checkpoint
    for ``args.resume_dir``. ``kind``: ``"bc"``, ``"ppo"`` or ``"ppo_online"``; ``total``:
    the fold's steps; ``result_name``: the file a finished run writes (removed on a fresh start).
    Only the ``writer`` (rank 0 under torchrun) writes files; every rank loads the start."""
    every, resume_dir = args.checkpoint_every, getattr(args, "resume_dir", None)
    if every is None:
        return RunPlan()
    if args.out is None:
        raise UsageError("--checkpoint-every needs --out DIR (where checkpoints go)")
    if every < 1:
        raise UsageError(f"--checkpoint-every must be >= 1, got {every}")
    out, current = Path(args.out), _record(args, kind, settings, inputs)
    if resume_dir is None and not writer:
        return RunPlan()
    if resume_dir is None:
        start_log = log.position(0)
        current = attrs.evolve(
            current, log_start=None if start_log is None else log_sizes(start_log)
        )
        for stale in (STATE_FILE, ENV_FILE, result_name):
            (out / stale).unlink(missing_ok=True)
        write_run_record(out, current)
        return RunPlan(sinks=_sinks(out, every, total, kind, current, log), out=out)
    recorded = read_run_record(out)
    check_same_run(recorded, current, out)
    point = load_resume_point(
        out, kind=kind, run=recorded, log=log if writer else LogSettings(), device=device
    )
    if not writer:
        return RunPlan(start=point)
    if point is None and recorded.log_start and log.path is not None:
        cut_logs(log.path, recorded.log_start)
    return RunPlan(sinks=_sinks(out, every, total, kind, recorded, log), start=point, out=out)


def _sinks(
    out: Path, every: int, total: int, kind: str, run: RunRecord, log: LogSettings
) -> tuple[Sink, ...]:
    return (checkpoint_sink(out, every=every, total=total, kind=kind, run=run, log=log),)


def record_rerun(args: argparse.Namespace, *, kind: str, inputs: Iterable[Any]) -> None:
    """For a command that resumes by re-running itself (``anneal``): write ``run.json`` into
    ``--out`` so that ``townlet-train resume DIR`` can re-run it; on such a resume, refuse input
    data that changed since (the command's own run-state checks cover the rest)."""
    if args.out is None:
        return
    out, current = Path(args.out), _record(args, kind, {}, inputs)
    if getattr(args, "resume_dir", None) is None:
        write_run_record(out, current)
        return
    check_same_run(read_run_record(out), current, out)
