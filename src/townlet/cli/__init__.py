"""The ``townlet-train`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; this module only
builds the parser, dispatches, and turns errors into exit codes:

* 0 — success;
* 1 — a failed run, or a validation/gate the user asked to fail on;
* 2 — bad usage or bad input, reported as one line on stderr with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from townlet.errors import TorchNotAvailableError, TownletInputError, TrainingFailedError

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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``townlet-train`` and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except (UsageError, TownletInputError, FileNotFoundError, IsADirectoryError) as exc:
        sys.stderr.write(f"townlet-train {args.command}: error: {exc}\n")
        return 2
    except TorchNotAvailableError as exc:
        sys.stderr.write(f"townlet-train {args.command}: error: {exc}\n")
        return 1
    except TrainingFailedError as exc:
        sys.stderr.write(f"townlet-train {args.command}: failed: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"townlet-train {args.command}: interrupted\n")
        return 130
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
