"""Helpers shared by the subcommand modules: JSON output, run-directory errors in CLI terms."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any


def print_json(payload: Any) -> None:
    """Write ``payload`` to stdout as indented JSON (NaN/Inf become null)."""
    sys.stdout.write(json.dumps(_finite(payload), indent=2, sort_keys=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@contextlib.contextmanager
def cli_run_dir_errors() -> Iterator[None]:
    """Turn a run directory that holds another run into a usage error (exit 2) whose way out
    is ``--out NEW`` or ``--overwrite`` rather than the Python API's ``overwrite=True``."""
    from townlet.cli import UsageError
    from townlet.policy.training.run_fingerprint import RunMismatchError

    try:
        yield
    except RunMismatchError as exc:
        raise UsageError(exc.cli_message()) from None
