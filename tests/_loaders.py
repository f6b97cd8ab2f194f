"""Every townlet loader behind one name, for the malformed-input and mutation tests.

Each loader takes a path and either returns or raises one of townlet's documented error types
(``TownletInputError`` subclasses); anything else escaping is a bug.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from townlet.config import load_config
from townlet.dto.telemetry import read_telemetry
from townlet.dto.telemetry_validate import load_baseline
from townlet.errors import (
    CheckpointError,
    ConfigError,
    PromotionError,
    ReplayDataError,
    TelemetryError,
    TownletInputError,
)
from townlet.policy.replay.io import load_replay_sample, read_sample_header, read_sidecar
from townlet.policy.replay.manifest import read_capture_metrics, read_manifest
from townlet.policy.training.run_state_file import read_run_state_file
from townlet.policy.training.services.promotion_io import load_promotion_state


def _npz(path: Path) -> Any:
    return load_replay_sample(path, require_conflict_features=False)


def _npz_header(path: Path) -> Any:
    return read_sample_header(path, require_conflict_features=False)


def _checkpoint(path: Path) -> Any:
    from townlet.policy.nn.checkpoint import load_checkpoint

    return load_checkpoint(path)


LOADERS: dict[str, tuple[Callable[[Path], Any], type[TownletInputError]]] = {
    "config": (load_config, ConfigError),
    "config_yaml": (load_config, ConfigError),
    "sidecar": (lambda p: read_sidecar(p, require_conflict_features=False), ReplayDataError),
    "npz": (_npz, ReplayDataError),
    "npz_header": (_npz_header, ReplayDataError),
    "manifest": (read_manifest, ReplayDataError),
    "capture_metrics": (read_capture_metrics, ReplayDataError),
    "telemetry": (read_telemetry, TelemetryError),
    "baseline": (load_baseline, TelemetryError),
    "checkpoint": (_checkpoint, CheckpointError),
    "promotion": (load_promotion_state, PromotionError),
    "run_state": (read_run_state_file, CheckpointError),
}

# Which documented errors each loader may raise besides its own: a checkpoint's header is read
# through the same JSON boundary, a sample's sidecar through ReplayDataError, and so on.
DOCUMENTED = (TownletInputError,)
