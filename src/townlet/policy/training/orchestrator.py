"""The orchestrator: fold training stages over an :class:`AnnealState`, doing the I/O around them.

A BC run, a PPO run on replay data, rollout-PPO cycles (capture with the current parameters →
PPO → repeat, each cycle in its social reward stage) and an anneal schedule are all sequences of
:class:`~townlet.config.AnnealStage` folded with
:func:`~townlet.policy.training.strategies.anneal.step.anneal_stage_step`. Around each step:
a tqdm bar (off when stderr is not a TTY), the stage's epochs appended to
``run_dir/telemetry.jsonl``, a checkpoint, and an ``on_stage`` callback; at the end
``anneal_results.json``. A run directory that holds a checkpoint resumes after its last stage
(the telemetry file is cut back to what that checkpoint had seen), and, since every stage
derives its seeds from the run seed and its index, ends exactly where an uninterrupted run does.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from tqdm import tqdm

from townlet._atomic import atomic_write, write_text_atomic
from townlet._input_limits import read_bytes, show_path
from townlet.config import AnnealStage, Config
from townlet.dto.convert import to_dict
from townlet.dto.policy import AnnealStageResult
from townlet.dto.telemetry import write_telemetry
from townlet.errors import ConfigError
from townlet.policy.training.fold import Sink, run_fold
from townlet.policy.training.run_fingerprint import ensure_same_run
from townlet.policy.training.strategies.anneal.data import (
    AnnealData,
    AnnealInputs,
    load_anneal_data,
)
from townlet.policy.training.strategies.anneal.io import (
    load_anneal_state,
    read_run_state,
    save_anneal_state,
    stage_to_dict,
)
from townlet.policy.training.strategies.anneal.state import AnnealState, StageOutput
from townlet.policy.training.strategies.anneal.step import anneal_stage_step

TELEMETRY_FILE = "telemetry.jsonl"
RESULTS_FILE = "anneal_results.json"
StageCallback = Callable[[AnnealState, AnnealStageResult], None]


@attrs.frozen(kw_only=True, eq=False)
class TrainingContext:
    """A training run: its ``config``, the ``data`` its stages read (demonstrations, a replay
    dataset or a rollout plan; loaded once when the fold starts, or already loaded), the
    current ``state``, and the ``run_dir`` files go to (None: no files, no resume)."""

    config: Config
    data: AnnealData | AnnealInputs
    state: AnnealState
    run_dir: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))


def rollout_cycles(
    bc_weights: Sequence[float], *, epochs: int, first_cycle: int = 1
) -> tuple[AnnealStage, ...]:
    """PPO stages on fresh rollouts, one per cycle from ``first_cycle``, cycle ``i`` with
    ``bc_weights[i]`` as its BC coefficient (anneal it down towards 0 for pure RL)."""
    return tuple(
        AnnealStage(cycle=first_cycle + i, mode="ppo", epochs=epochs, bc_weight=w)
        for i, w in enumerate(bc_weights)
    )


def _resume(ctx: TrainingContext, stages: Sequence[AnnealStage]) -> tuple[AnnealState, int]:
    """The state to start from and the telemetry lines already written (0 for a fresh run)."""
    ensure_same_run(ctx, stages)  # only the same run resumes (run_fingerprint.json)
    if ctx.run_dir is None or (data := read_run_state(ctx.run_dir)) is None:
        return ctx.state, 0
    if data.get("stages") != [stage_to_dict(stage) for stage in stages]:
        raise ConfigError(
            f"{ctx.run_dir}: the run directory holds a run with another schedule; "
            "use a new --out directory"
        )
    lines = int(data.get("telemetry_lines", 0))
    _truncate_lines(ctx.run_dir / TELEMETRY_FILE, lines)
    return load_anneal_state(ctx.run_dir, data), lines


def _truncate_lines(path: Path, lines: int) -> None:
    # Epochs written after the last checkpoint (an interrupted stage) are run again on resume.
    # The file is read at the input boundary: a FIFO or device is refused, not waited on.
    if not path.exists() and not path.is_symlink():
        return
    label = f"{show_path(path)}: anneal telemetry"
    kept = read_bytes(path, ConfigError, label).splitlines(keepends=True)
    if len(kept) < lines:
        raise ConfigError(
            f"{label} has {len(kept)} lines, fewer than the {lines} its run state records; "
            "the run directory was changed, cannot resume"
        )
    data = b"".join(kept[:lines])
    atomic_write(path, lambda handle: handle.write(data))


def stage_files_sink(run_dir: Path, stages: Sequence[AnnealStage], lines: int) -> Sink:
    """The run directory's sink: append a stage's epochs to ``telemetry.jsonl``, then
    checkpoint the state with the number of lines written (``run_state.json`` last, so it
    always names a complete checkpoint and the lines it has seen)."""
    written = lines

    def save(index: int, state: AnnealState, output: StageOutput) -> None:
        nonlocal written
        if output.epochs:
            written += write_telemetry(output.epochs, run_dir / TELEMETRY_FILE, append=True)
        save_anneal_state(run_dir, state, stages=stages, telemetry_lines=written)

    return save


def _progress_sink(bar: Any) -> Sink:
    def sink(index: int, state: AnnealState, output: StageOutput) -> None:
        bar.set_postfix_str(f"cycle {int(output.result.cycle)} {output.result.mode}")
        bar.update(1)

    return sink


def write_results(run_dir: Path, results: Sequence[AnnealStageResult]) -> Path:
    """Write ``run_dir/anneal_results.json`` (a JSON array of stage results) atomically."""
    payload = json.dumps([to_dict(result) for result in results], indent=2) + "\n"
    return write_text_atomic(run_dir / RESULTS_FILE, payload)


def run_stages(
    ctx: TrainingContext,
    stages: Sequence[AnnealStage],
    *,
    on_stage: StageCallback | None = None,
    quiet: bool = False,
    desc: str = "train",
) -> TrainingContext:
    """Fold ``stages`` over ``ctx.state`` (resuming from ``ctx.run_dir`` when it holds a
    checkpoint); stop early when a BC gate fails. Returns the context with the final state.

    Raises ``ConfigError`` when ``run_dir`` holds a run of another schedule, and whatever the
    stages raise.
    """
    state, lines = _resume(ctx, stages)
    data = ctx.data
    if isinstance(data, AnnealData):
        data = load_anneal_data(data, ctx.config, stages=stages)
    sinks: list[Sink] = []
    if ctx.run_dir is not None:
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        sinks.append(stage_files_sink(ctx.run_dir, stages, lines))
    if on_stage is not None:
        sinks.append(lambda index, state, output: on_stage(state, output.result))
    disable = quiet or not sys.stderr.isatty()
    with tqdm(
        total=len(stages), initial=state.stage_index, desc=desc, unit="stage", disable=disable
    ) as bar:
        state, _ = run_fold(
            functools.partial(_step, data=data, config=ctx.config),
            state,
            stages[state.stage_index :],
            sinks=(*sinks, _progress_sink(bar)),
            stop=lambda current: current.stopped,
            start=state.stage_index,
        )
    if ctx.run_dir is not None:
        write_results(ctx.run_dir, state.results)
    return attrs.evolve(ctx, state=state)


def _step(
    state: AnnealState, stage: AnnealStage, *, data: AnnealInputs, config: Config
) -> tuple[AnnealState, StageOutput]:
    # The run clock times the stages' durations; the step itself reads none.
    return anneal_stage_step(state, stage, data, config, clock=time.perf_counter)
