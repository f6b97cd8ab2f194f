"""Helpers shared by the subcommand modules: JSON output."""

from __future__ import annotations

import json
import sys
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
