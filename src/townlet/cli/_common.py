"""Helpers shared by the subcommand modules: JSON output, output path checks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from townlet._input_limits import show_path
from townlet.cli import UsageError


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


def check_out_dir(out: Path | None) -> None:
    """Refuse an ``--out`` directory that cannot be one before the run starts, so that no
    work is lost: an existing file, a path under a file, or one on a read-only file system."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {show_path(out)}: exists and is not a directory")
    _check_writable_ancestor(out, "--out")


def check_out_file(out: Path | str | None, option: str = "--out") -> None:
    """Refuse an output file path that cannot be written: a directory, a path under a file,
    or one on a read-only file system."""
    if out is None:
        return
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"{option} {show_path(path)}: is a directory, expected a file path")
    _check_writable_ancestor(path.parent, option, shown=path)


def _check_writable_ancestor(path: Path, option: str, *, shown: Path | None = None) -> None:
    shown = path if shown is None else shown
    ancestor = path
    while not ancestor.exists():
        if ancestor.is_symlink() or ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise UsageError(f"{option} {show_path(shown)}: {show_path(ancestor)} is not a directory")
    if ancestor.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(
            f"{option} {show_path(shown)}: {show_path(ancestor)} is not writable "
            "(read-only file system or permission denied)"
        )
