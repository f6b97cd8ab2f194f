"""run_fold: the one fold of every training loop, and its sinks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from townlet.dto.policy import PPOTrainingResult
from townlet.policy.training.fold import callback_sink, run_fold, run_sinks, telemetry_sink
from townlet.policy.training.telemetry_log import open_log


def _add(total: int, x: int) -> tuple[int, int]:
    return total + x, total * 10 + x


def test_fold_threads_the_state_and_hands_every_output_to_the_sinks_in_order() -> None:
    seen: list[tuple[str, int, Any, Any]] = []
    sinks = [
        lambda i, s, o: seen.append(("a", i, s, o)),
        lambda i, s, o: seen.append(("b", i, s, o)),
    ]
    state, outs = run_fold(_add, 1, [2, 3], sinks=sinks)
    assert (state, outs) == (6, (12, 33))
    assert seen == [("a", 1, 3, 12), ("b", 1, 3, 12), ("a", 2, 6, 33), ("b", 2, 6, 33)]


def test_fold_stops_before_a_step_and_resumed_indices_continue() -> None:
    state, outs = run_fold(_add, 0, [1, 2, 3, 4], stop=lambda total: total >= 3)
    assert (state, outs) == (3, (1, 12))
    indices: list[int] = []
    run_fold(_add, 0, [5, 6], sinks=[callback_sink(lambda i, o: indices.append(i))], start=2)
    assert indices == [3, 4]


def _record(epoch: int) -> PPOTrainingResult:
    values: dict[str, Any] = {
        "epoch": float(epoch), "updates": 1.0, "transitions": 4.0, "loss_policy": 0.1,
        "loss_value": 0.2, "loss_entropy": 0.3, "loss_total": 0.4, "clip_fraction": 0.0,
        "adv_mean": 0.0, "adv_std": 1.0, "grad_norm": 0.5, "kl_divergence": 0.0, "lr": 0.001,
        "steps": float(4 * epoch),
    }  # fmt: skip
    return PPOTrainingResult(**values)


def test_telemetry_sink_samples_and_rotates_like_the_drivers(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t.jsonl", log_frequency=2, max_entries=1)
    sink = telemetry_sink(log, lambda out: (out,))
    for epoch in range(1, 6):
        sink(epoch, None, _record(epoch))
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    rotated = (tmp_path / "t.jsonl.1").read_text().splitlines()
    assert epochs == [2.0] and [json.loads(line)["epoch"] for line in rotated] == [4.0]


def test_run_sinks_builds_only_what_is_asked(tmp_path: Path) -> None:
    assert (
        run_sinks(
            log_path=None, log_frequency=1, max_log_entries=None, progress=None, record=lambda o: o
        )
        == []
    )
    calls: list[tuple[int, float]] = []
    sinks = run_sinks(
        log_path=tmp_path / "x.jsonl",
        log_frequency=1,
        max_log_entries=None,
        progress=lambda i, r: calls.append((i, r.epoch)),
        record=lambda out: out[0],
    )
    assert (tmp_path / "x.jsonl").exists()  # opened (created) when the run starts
    for sink in sinks:
        sink(1, None, (_record(1), "trajectory"))
    assert calls == [(1, 1.0)] and len((tmp_path / "x.jsonl").read_text().splitlines()) == 1
