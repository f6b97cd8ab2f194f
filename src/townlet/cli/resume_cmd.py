"""``townlet-train resume DIR``: continue an interrupted ``bc`` or ``ppo`` run from its last
checkpoint, with the arguments recorded in ``DIR/run.json`` (issue #17); an ``anneal`` or
``demo`` run is re-run with its recorded arguments (it resumes from its own run state)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from townlet.cli import UsageError
from townlet.errors import ConfigError
from townlet.policy.training.resume import STATE_FILE
from townlet.policy.training.run_dir import RUN_FILE, parsed_args, read_run_record


def register(subparsers: Any) -> None:
    """Add the ``resume`` subcommand."""
    parser = subparsers.add_parser(
        "resume",
        help="continue an interrupted run (bc/ppo/ppo --env with --checkpoint-every; anneal; demo)",
        description=(
            "Continue the bc, ppo or online ppo (--env) run whose --out directory is DIR from "
            "its last checkpoint, with the arguments recorded in DIR/run.json. Telemetry is cut "
            "back to what the checkpoint had seen, so the finished run equals an uninterrupted "
            "one. An anneal or demo run (DIR, or one demo seed's DIR/seed_<k>) is re-run with "
            "its recorded arguments and continues from its own run state. Refused when the "
            "input data or the resolved settings differ from the recorded ones."
        ),
    )
    parser.add_argument("dir", type=Path, help="the interrupted run's --out directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_resume)


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    if command == "bc":
        from townlet.cli.bc_cmd import run_bc

        return run_bc
    if command in ("ppo", "ppo_online"):
        from townlet.cli.ppo_cmd import run_ppo

        return run_ppo
    if command == "anneal":
        from townlet.cli.anneal_cmd import run_anneal_cmd

        return run_anneal_cmd
    if command == "demo":
        from townlet.cli.demo_cmd import run_demo_cmd

        return run_demo_cmd
    raise UsageError(f"cannot resume a {command!r} run (bc, ppo, anneal and demo runs resume)")


def result_name(command: str) -> str:
    """The file a finished run of ``command`` leaves in its ``--out``."""
    return "summary.json" if command == "ppo_online" else "result.json"


def resumed_args(run_dir: Path) -> tuple[argparse.Namespace, Callable[[argparse.Namespace], int]]:
    """The recorded arguments of the run in ``run_dir`` (set to resume) and its handler."""
    record = read_run_record(run_dir)
    result = result_name(record.command)
    finished = not (run_dir / STATE_FILE).is_file() and (run_dir / result).is_file()
    rerun = record.command in ("anneal", "demo")  # these resume from their own run state
    if not rerun and finished:
        raise UsageError(f"{run_dir / RUN_FILE}: this run already finished (see {result})")
    handler = _handler(record.command)
    args = argparse.Namespace(**parsed_args(record.args))
    args.resume_dir = run_dir
    args.handler = handler
    if rerun:
        args.overwrite = False  # continue the run in DIR, never start it over
    return args, handler


def run_resume(args: argparse.Namespace) -> int:
    """Handler of ``townlet-train resume``."""
    run_args, handler = resumed_args(args.dir)
    run_args.quiet = run_args.quiet or args.quiet
    return handler(run_args)


def resume_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Continue the interrupted ``bc``/``ppo`` run in ``run_dir`` (``townlet-train resume``,
    quiet, its JSON printed to stdout) and return its ``result.json``. Raises ``ConfigError``
    for a directory without a run record, or whose data or settings changed."""
    run_args, handler = resumed_args(Path(run_dir))
    run_args.quiet = True
    code = handler(run_args)
    if code != 0:
        raise UsageError(f"{run_dir}: resumed run exited {code}")
    from townlet._input_limits import loads_json, read_text

    path = Path(run_dir) / result_name(read_run_record(Path(run_dir)).command)
    label = str(path)
    result: dict[str, Any] = loads_json(read_text(path, ConfigError, label), ConfigError, label)
    return result
