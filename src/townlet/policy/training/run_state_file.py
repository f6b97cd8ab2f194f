"""Reading ``run_state.json`` (the resume point of a run directory) at the input boundary.

The file decides what a resumed run does to the run directory — how many telemetry lines it
keeps, which checkpoint it loads, which stage it starts at — so every field is checked before
it is used: a negative ``telemetry_lines`` would erase the telemetry, a negative
``stage_index`` would rerun the schedule from its end, a ``checkpoint`` of ``../x`` would read
outside the directory.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from townlet._input_limits import check_int, loads_json, read_text, short_repr, show_path
from townlet.errors import CheckpointError

_INT64_MAX = 2**63 - 1


def read_run_state_file(path: Path) -> dict[str, Any]:
    """The checked bookkeeping in ``path``; :class:`CheckpointError` naming the file and the
    field for anything unreadable, malformed or out of range."""
    where = f"{show_path(path)}: run state"
    data = loads_json(read_text(path, CheckpointError, where), CheckpointError, where)
    if not isinstance(data, dict):
        raise CheckpointError(f"{show_path(path)}: expected a JSON object")
    check_run_state(data, str(show_path(path)))
    return data


def check_run_state(data: dict[str, Any], where: str) -> None:
    """Check the types and ranges of the fields a resume reads (absent ones are reported where
    they are used)."""
    stages = data.get("stages", [])
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise CheckpointError(f"{where}: 'stages' must be a list of objects")
    ints = {
        "seed": (0, 2**64 - 1),
        "stage_index": (0, len(stages)),
        "telemetry_lines": (0, _INT64_MAX),
    }
    for key, (low, high) in ints.items():
        if key in data:
            check_int(data[key], CheckpointError, f"{where}: {key!r}", low=low, high=high)
    for key in ("stopped", "warmup_pending"):
        if key in data and not isinstance(data[key], bool):
            raise CheckpointError(f"{where}: {key!r} must be true or false")
    for key in ("results", "rollout_returns"):
        if key in data and not isinstance(data[key], list):
            raise CheckpointError(f"{where}: {key!r} must be a list")
    _check_checkpoint_name(data.get("checkpoint"), where)


def _check_checkpoint_name(name: object, where: str) -> None:
    if name is None:
        return
    if not isinstance(name, str) or not name or "\0" in name:
        raise CheckpointError(f"{where}: 'checkpoint' must be a file name, got {short_repr(name)}")
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts:
        raise CheckpointError(
            f"{where}: 'checkpoint' must name a file inside the run directory, "
            f"got {short_repr(name)}"
        )
