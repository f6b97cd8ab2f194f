"""Saving and loading an :class:`AnnealState` in a run directory, so a run resumes exactly.

Two files per save, each written atomically: ``checkpoints/stage_{k:03d}.pt`` (the network, the
Adam moments and the PPO counters when a PPO run is carried; a plain checkpoint after BC) and
``run_state.json`` (the bookkeeping: seed, stage index, results, baselines, the latest BC
result, warm-up and stop flags, per-stage rollout returns, the schedule it runs, the number of
telemetry lines written, and the checkpoint file name). ``run_state.json`` is written last, so
it always names a complete checkpoint. Imports without torch; saving or loading parameters
needs it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from townlet._atomic import write_text_atomic
from townlet.config import AnnealStage
from townlet.dto.convert import from_dict, to_dict
from townlet.dto.policy import AnnealStageResult
from townlet.errors import CheckpointError
from townlet.policy.training.run_state_file import read_run_state_file
from townlet.policy.training.strategies.anneal.flags import (
    baselines_from_dict,
    baselines_to_dict,
)
from townlet.policy.training.strategies.anneal.state import AnnealState

RUN_STATE_FILE = "run_state.json"
CHECKPOINT_DIR = "checkpoints"


def stage_to_dict(stage: AnnealStage) -> dict[str, Any]:
    """An anneal stage as its config mapping (``cycle``, ``mode``, ``epochs``, ``bc_weight``)."""
    return {
        "cycle": stage.cycle,
        "mode": stage.mode,
        "epochs": stage.epochs,
        "bc_weight": stage.bc_weight,
    }


def _bookkeeping(
    state: AnnealState, stages: Sequence[AnnealStage], telemetry_lines: int, checkpoint: str | None
) -> dict[str, Any]:
    return {
        "seed": state.seed,
        "stage_index": state.stage_index,
        "stopped": state.stopped,
        "warmup_pending": state.warmup_pending,
        "baselines": baselines_to_dict(state.baselines),
        "last_bc": None if state.last_bc is None else to_dict(state.last_bc),
        "results": [to_dict(result) for result in state.results],
        "rollout_returns": list(state.rollout_returns),
        "stages": [stage_to_dict(stage) for stage in stages],
        "telemetry_lines": telemetry_lines,
        "checkpoint": checkpoint,
    }


def save_anneal_state(
    run_dir: str | Path,
    state: AnnealState,
    *,
    stages: Sequence[AnnealStage],
    telemetry_lines: int = 0,
) -> Path:
    """Checkpoint ``state`` (after ``state.stage_index`` of ``stages``) into ``run_dir``;
    return the path of ``run_state.json``."""
    root = Path(run_dir)
    name: str | None = None
    if state.params is not None and state.spec is not None:
        name = f"{CHECKPOINT_DIR}/stage_{state.stage_index:03d}.pt"
        save_network(root / name, state)
    payload = _bookkeeping(state, stages, telemetry_lines, name)
    return write_text_atomic(root / RUN_STATE_FILE, json.dumps(payload, indent=2) + "\n")


def save_network(path: str | Path, state: AnnealState) -> Path:
    """Save ``state``'s network to ``path``: the whole PPO state (``load_ppo_state`` continues
    it) when a PPO run is carried, else the parameters. Raises ``CheckpointError`` when the
    state has no network yet."""
    from townlet.policy.nn.checkpoint import save_checkpoint
    from townlet.policy.training.strategies.ppo.checkpoint import save_ppo_state

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    extra = {"kind": "anneal", "anneal_stage": state.stage_index}
    if state.ppo_state is not None:
        return save_ppo_state(target, state.ppo_state, extra=extra)
    if state.params is None or state.spec is None:
        raise CheckpointError(f"{target}: no network to save before the first stage")
    return save_checkpoint(target, spec=state.spec, params=state.params, extra=extra)


def read_run_state(run_dir: str | Path) -> dict[str, Any] | None:
    """The bookkeeping of ``run_dir/run_state.json``, or None when there is none.

    Raises ``CheckpointError`` for a file that is not a JSON object or has a field of the wrong
    type or out of range (:mod:`townlet.policy.training.run_state_file`).
    """
    path = Path(run_dir) / RUN_STATE_FILE
    if not path.exists():
        return None
    return read_run_state_file(path)


def load_anneal_state(run_dir: str | Path, data: Mapping[str, Any]) -> AnnealState:
    """The :class:`AnnealState` saved in ``run_dir`` whose bookkeeping is ``data``
    (:func:`read_run_state`). Raises ``CheckpointError`` for a bad field or checkpoint."""
    source = Path(run_dir) / RUN_STATE_FILE
    try:
        results = tuple(from_dict(AnnealStageResult, item) for item in data["results"])
        last_bc = data.get("last_bc")
        state = AnnealState(
            seed=int(data["seed"]),
            baselines=baselines_from_dict(data.get("baselines") or {}),
            last_bc=None if last_bc is None else from_dict(AnnealStageResult, last_bc),
            warmup_pending=bool(data["warmup_pending"]),
            stage_index=int(data["stage_index"]),
            results=results,
            rollout_returns=tuple(data.get("rollout_returns") or ()),
            stopped=bool(data["stopped"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid run state: {exc!r}") from None
    name = data.get("checkpoint")
    if name is None:
        return state
    return _load_network(Path(run_dir) / str(name), state)


def _load_network(path: Path, state: AnnealState) -> AnnealState:
    from townlet.policy.nn.checkpoint import load_checkpoint
    from townlet.policy.training.strategies.ppo.checkpoint import load_ppo_state

    checkpoint = load_checkpoint(path)
    if checkpoint.adam_state is not None and "updates" in checkpoint.counters:
        ppo_state = load_ppo_state(path)
        return attrs.evolve(
            state, params=ppo_state.params, spec=ppo_state.spec, ppo_state=ppo_state
        )
    return attrs.evolve(state, params=checkpoint.params, spec=checkpoint.spec)
