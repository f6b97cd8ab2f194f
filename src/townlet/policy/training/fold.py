"""The one fold every training loop runs, and the sinks that do its I/O.

``run_fold(step, state, xs, sinks=...)`` applies ``step(state, x) -> (state, out)`` to each
``x`` in turn and hands ``(index, state, out)`` to every sink. BC (over epochs), replay PPO (over
epochs), online PPO (over updates) and anneal (over stages) are all this fold; what differs is
the step and the sinks. Steps compute; sinks write files, draw progress bars, save checkpoints
and call user callbacks. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from townlet.dto.policy import PPOTrainingResult
from townlet.policy.training.telemetry_log import TelemetryLog, log_epoch, open_log

S = TypeVar("S")
X = TypeVar("X")
O = TypeVar("O")  # noqa: E741 - the fold's output, as in (state, out)

Sink = Callable[[int, Any, Any], None]
"""``sink(index, state, out)``: called after step ``index`` (1-based) with its new state and
output. Sinks may write, print or time; they never change the state."""


def run_fold(
    step: Callable[[S, X], tuple[S, O]],
    state: S,
    xs: Iterable[X],
    *,
    sinks: Sequence[Sink] = (),
    stop: Callable[[S], bool] | None = None,
    start: int = 0,
) -> tuple[S, tuple[O, ...]]:
    """Fold ``step`` over ``xs`` from ``state``; return the final state and every output.

    Before each step, ``stop(state)`` (when given) ends the fold early. ``start`` is the number
    of steps already run (a resumed fold), so indices continue from ``start + 1``.
    """
    outputs: list[O] = []
    for index, x in enumerate(xs, start=start + 1):
        if stop is not None and stop(state):
            break
        state, out = step(state, x)
        outputs.append(out)
        for sink in sinks:
            sink(index, state, out)
    return state, tuple(outputs)


def callback_sink(callback: Callable[[int, Any], None]) -> Sink:
    """A sink calling ``callback(index, out)`` (the ``progress=`` arguments of the drivers)."""

    def sink(index: int, state: Any, out: Any) -> None:
        callback(index, out)

    return sink


def telemetry_sink(
    log: TelemetryLog, records: Callable[[Any], Sequence[PPOTrainingResult]]
) -> Sink:
    """A sink appending ``records(out)`` to the rotating telemetry ``log`` (sampled every
    ``log.log_frequency``-th record, numbered from 1 across the run)."""
    current, written = log, 0

    def sink(index: int, state: Any, out: Any) -> None:
        nonlocal current, written
        for record in records(out):
            written += 1
            current = log_epoch(current, written, record)

    return sink


def run_sinks(
    *,
    log_path: str | Path | None,
    log_frequency: int,
    max_log_entries: int | None,
    progress: Callable[[int, Any], None] | None,
    record: Callable[[Any], PPOTrainingResult],
) -> list[Sink]:
    """The sinks of a ``train_ppo``/``train_ppo_online`` run: the rotating telemetry file at
    ``log_path`` (opened, and so created, now) with ``record(out)`` of every step, and
    ``progress(index, record(out))``."""
    sinks: list[Sink] = []
    if log_path is not None:
        log = open_log(log_path, log_frequency=log_frequency, max_entries=max_log_entries)
        sinks.append(telemetry_sink(log, lambda out: (record(out),)))
    if progress is not None:
        callback = progress
        sinks.append(callback_sink(lambda index, out: callback(index, record(out))))
    return sinks
