"""The ``townlet-train`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; this module only
builds the parser, dispatches, and turns errors into exit codes:

* 0 — success;
* 1 — a failed run, or a validation/gate the user asked to fail on;
* 2 — bad usage or bad input, reported as one line on stderr with no traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

from townlet._input_limits import one_line
from townlet.cli._launch import DistributedUsageError, add_launch_options, run_with_group
from townlet.errors import (
    TorchNotAvailableError,
    TownletError,
    TownletInputError,
    TrainingFailedError,
)

# Subcommand modules, in the order they appear in ``--help``: the main job, then the user's path.
_COMMAND_MODULES: tuple[str, ...] = (
    "townlet.cli.demo_cmd",
    "townlet.cli.capture_cmd",
    "townlet.cli.bc_cmd",
    "townlet.cli.ppo_cmd",
    "townlet.cli.anneal_cmd",
    "townlet.cli.evaluate_cmd",
    "townlet.cli.promote_cmd",
    "townlet.cli.telemetry_cmd",
    "townlet.cli.replay_cmd",
    "townlet.cli.run_cmd",
)


class UsageError(Exception):
    """Bad command-line usage detected after argparse (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's default prints usage and exits 2; keep the exit code, one line.
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``townlet-train`` argument parser with every subcommand registered."""
    parser = _Parser(
        prog="townlet-train",
        description="Train agent policies for the townlet small-town simulation.",
    )
    add_launch_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``townlet-train`` and return its exit code."""
    parser = build_parser()
    return run_parsed(parser.parse_args(argv))


def run_parsed(args: argparse.Namespace) -> int:
    """Run parsed arguments (under torchrun: in the launch's process group) and map errors to
    exit codes; a peer that dies or times out is a failed run (1) reported in one line."""
    try:
        code: int = run_with_group(args)
    except KeyboardInterrupt:
        sys.stderr.write(f"townlet-train {args.command}: interrupted\n")
        return 130
    except _REPORTED as exc:  # one line, no traceback; a bug elsewhere keeps its traceback
        status, verb = _exit_status(exc)
        sys.stderr.write(f"townlet-train {args.command}: {verb}: {_message(exc)}\n")
        return status
    return code


_REPORTED = (
    TownletError,
    UsageError,
    DistributedUsageError,
    OSError,
    RecursionError,
    MemoryError,
    UnicodeError,
)
# Faults of the machine rather than of the input: a full or read-only disk, an I/O error.
_MACHINE_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM})


def _exit_status(exc: Exception) -> tuple[int, str]:
    """Exit status and verb for an error that ended a command: 2 for bad usage or input, 1 for
    a run that failed (training, a missing optional dependency, a full or read-only disk,
    input too large for memory)."""
    if isinstance(exc, TorchNotAvailableError):
        return 1, "error"
    if isinstance(exc, TrainingFailedError):
        return 1, "failed"
    if isinstance(
        exc, UsageError | DistributedUsageError | TownletInputError | UnicodeError | RecursionError
    ):
        return 2, "error"
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno not in _MACHINE_ERRNOS:
        return 2, "error"  # a path the user gave: missing, a directory, under a file, …
    return 1, "failed"


def _message(exc: Exception) -> str:
    """The error as one bounded line; OS errors as ``strerror: filename``."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        text = f"{exc.strerror}{where}"
    elif isinstance(exc, RecursionError | MemoryError):
        text = f"{type(exc).__name__} (input too deeply nested or too large)"
    elif isinstance(exc, TownletError | UsageError | DistributedUsageError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return one_line(text)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
