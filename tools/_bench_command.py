"""The whole ``townlet-train capture`` command against bare stepping, and deflate levels
(parts ``command`` and ``levels`` of tools/bench_capture.py).

**command**: for 128 × 500 and 2048 × 200 agents × ticks, in fresh processes, alternating
``--rounds`` times (medians): *bare step* (``step`` only, the scripted actions computed outside
the timed region), *step + observe* (``scripted_actions`` + ``step`` + ``observe``, timed whole)
and the *whole command* (``townlet-train capture --policy scripted --quiet``, wall clock of the
process from start to exit: interpreter start, imports, stepping, samples, writing), compressed
(default level) and ``--no-compress``. Peak RSS of each process comes from ``wait4``.

**levels**: one 2048 × 200 capture saved at each deflate level (and stored), with the default
writer pool and with ``workers=0`` (no threads), beside the previous writer (``save_replay_sample``
per sample: ``np.savez_compressed`` and an ``fsync``'d temporary file per file); wall time,
CPU time of the process (all threads) and bytes on disk.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _benchdoc import replace_section
from townlet.policy.replay import save_replay_sample
from townlet.policy.replay.deflate import ISAL
from townlet.policy.rollout import POLICY_STREAM, buffer_from_frames, capture_frames, sample_stem
from townlet.policy.rollout.save import DEFAULT_COMPRESS_LEVEL, save_rollout
from townlet.policy.rollout.writer_pool import default_workers
from townlet.world import observe, reset, scaled_world_config, scripted_actions, step

CHILD_KINDS = ("bare_step", "step_observe")
SIZES = ((128, 500), (2048, 200))
_CLI = "from townlet.cli import run; run()"


def child(kind: str, agents: int, ticks: int) -> list[float]:
    """Seconds of one run of ``kind`` (in a fresh process)."""
    cfg = scaled_world_config(agents)
    state = reset(cfg, 0)
    rng = np.random.default_rng([0, POLICY_STREAM])
    spent = 0.0
    start = time.perf_counter()
    observe(state)
    for _ in range(ticks):
        if kind == "bare_step":
            actions = scripted_actions(state, None, rng)
            t0 = time.perf_counter()
            state, _, _, _ = step(state, actions)
            spent += time.perf_counter() - t0
        else:
            state, _, _, _ = step(state, scripted_actions(state, None, rng))
            observe(state)
    return [spent if kind == "bare_step" else time.perf_counter() - start]


def _wait(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``argv``; (wall seconds, peak RSS MB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_maxrss / 1024, out


def _outputs() -> list[tuple[str, str, list[str]]]:
    """(name, TOWNLET_DEFLATE, extra arguments) of the command's runs: deflate with each codec
    installed, and stored."""
    codecs = ["isal", "zlib"] if ISAL is not None else ["zlib"]
    return [(f"deflate_{c}", c, []) for c in codecs] + [("stored", "zlib", ["--no-compress"])]


def _measure(script: str, agents: int, ticks: int, rounds: int, tmp: Path) -> dict[str, Any]:
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for kind in CHILD_KINDS:
            _, rss, out = _wait(
                [sys.executable, script, "--child", kind, str(agents), str(ticks), "1"]
            )
            runs.setdefault(kind, []).append((float(out.strip().splitlines()[-1][1:-1]), rss))
        for name, codec, extra in _outputs():
            argv = [sys.executable, "-c", _CLI, "capture", "--agents", str(agents),
                    "--ticks", str(ticks), "--policy", "scripted", "--out", str(tmp / name),
                    "--quiet", *extra]  # fmt: skip
            wall, rss, _ = _wait(argv, {**os.environ, "TOWNLET_DEFLATE": codec})
            size = sum(p.stat().st_size for p in (tmp / name).iterdir())
            runs.setdefault(name, []).append((wall, rss))
            runs.setdefault(name + "_mb", []).append((size / 1e6, 0.0))
            shutil.rmtree(tmp / name)
    return {k: (float(np.median([r[0] for r in v])), max(r[1] for r in v)) for k, v in runs.items()}


def _command_table(rows: list[tuple[int, int, dict[str, Any]]]) -> str:
    lines = [
        "| agents × ticks | output | bare step: agent-steps/s | step + scripted + observe "
        "| whole command | command ÷ step+observe | command ÷ bare | command peak RSS "
        "| step+observe peak RSS | on disk |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for agents, ticks, m in rows:
        steps = agents * ticks
        bare, obs = steps / m["bare_step"][0], steps / m["step_observe"][0]
        for name, _, _ in _outputs():
            label = name.replace("deflate_", f"deflate {DEFAULT_COMPRESS_LEVEL}, ")
            cmd = steps / m[name][0]
            lines.append(
                f"| {agents} × {ticks} | {label} | {bare:,.0f} | {obs:,.0f} | {cmd:,.0f} "
                f"| {cmd / obs:.2f} | {cmd / bare:.2f} | {m[name][1]:,.0f} MB "
                f"| {m['step_observe'][1]:,.0f} MB | {m[name + '_mb'][0]:,.1f} MB |"
            )
    return "\n".join(lines)


def _load_note(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    loads = f"load average (1 min) {before[0]:.1f} before, {after[0]:.1f} after"
    if max(before[0], after[0]) <= (os.cpu_count() or 1):
        return loads + "."
    return (
        f"{loads}: **taken under load** (other jobs shared the cores), so the absolute "
        "figures are far below an idle machine's; compare within a table, run again when quiet."
    )


def _machine() -> str:
    return (
        f"numpy {np.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} vCPUs"
    )


def run_command_part(rounds: int, write: Path | None, script: str) -> None:
    """Measure the whole command (module docstring); print and optionally write the table."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(a, t, _measure(script, a, t, rounds, Path(tmp))) for a, t in SIZES]
    load_after = os.getloadavg()
    table = _command_table(rows)
    print(table)
    print(f"load average before {load_before}, after {load_after}")
    if write is not None:
        section = (
            "## Capture command\n\n"
            "`python tools/bench_capture.py --part command` — the whole `townlet-train capture "
            "--policy scripted --quiet` process (start to exit) against bare stepping and step "
            "+ scripted policy + observe, each in a fresh process, "
            f"{rounds} alternating round(s), medians; peak RSS from `wait4`. {_machine()}; "
            f"{default_workers()} writer threads, which deflate the samples' maps while the town "
            "steps and one more that creates the files (`SampleEncoder`, issue #16). `isal` / "
            "`zlib`: the deflate codec (`TOWNLET_DEFLATE`). Every command writes a fresh "
            "directory in one temporary directory right after the previous run's was deleted: "
            "on this VM's journal-less ext4 that makes creating files slow (docs/capture.md, "
            f'"Where the time goes"); {_load_note(load_before, load_after)}\n\n'
            f"{table}\n"
        )
        replace_section(write, "Capture command", section)


def run_baseline_part(rev: str, rounds: int, write: Path | None) -> None:
    """The whole 2048 × 200 compressed command with the code at git revision ``rev`` (extracted
    with ``git archive``, run with ``PYTHONPATH`` on it) and with this tree, alternating."""
    root = Path(__file__).resolve().parents[1]
    agents, ticks = SIZES[-1]
    load_before = os.getloadavg()
    runs: dict[str, list[tuple[float, float]]] = {rev: [], "now": []}
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", rev, "src"], cwd=root, check=True,
                                 capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for _ in range(rounds):
            for name in runs:
                env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")} if name == rev else None
                out = Path(tmp) / "out"
                argv = [sys.executable, "-c", _CLI, "capture", "--agents", str(agents),
                        "--ticks", str(ticks), "--policy", "scripted", "--out", str(out),
                        "--quiet"]  # fmt: skip
                wall, rss, _ = _wait(argv, env)
                runs[name].append((wall, rss))
                shutil.rmtree(out)
    load_after = os.getloadavg()
    lines = [
        "| code | whole command: agent-steps/s | wall (s) | peak RSS |",
        "|---|---:|---:|---:|",
    ]
    for name, values in runs.items():
        wall = float(np.median([v[0] for v in values]))
        rss = max(v[1] for v in values)
        lines.append(f"| {name} | {agents * ticks / wall:,.0f} | {wall:.1f} | {rss:,.0f} MB |")
    table = "\n".join(lines)
    print(table)
    if write is not None:
        section = (
            "## Capture command against an earlier revision\n\n"
            f"`python tools/bench_capture.py --part baseline --baseline-rev {rev}` — "
            f"`townlet-train capture --agents {agents} --ticks {ticks} --policy scripted --quiet`"
            f" (compressed, each revision's defaults) with the code at `{rev}` and with this "
            f"tree, alternating {rounds} time(s), medians. {_machine()}; "
            f"{_load_note(load_before, load_after)}\n\n{table}\n"
        )
        replace_section(write, "Capture command against an earlier revision", section)


def _old_writer(buffer: Any, out: Path) -> None:
    out.mkdir()
    for number, (sample, agent) in enumerate(zip(buffer.samples, buffer.agent_ids, strict=True)):
        save_replay_sample(sample, out / f"{sample_stem('rollout_sample', agent, number + 1)}.npz")


def _saver(buffer: Any, level: int | None, workers: int | None) -> Any:
    def save(out: Path) -> None:
        save_rollout(buffer, out, compress=level is not None, compress_level=level, workers=workers)

    return save


def _timed(write: Any, out: Path) -> tuple[float, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    write(out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    shutil.rmtree(out)
    return wall, cpu, size


def run_levels_part(write: Path | None, agents: int = 2048, ticks: int = 200) -> None:
    """Save one capture at every level (module docstring); print and optionally write."""
    buffer = buffer_from_frames(capture_frames(scaled_world_config(agents), "scripted", ticks, 0))
    load_before = os.getloadavg()
    cases: list[tuple[str, Any]] = [
        ("previous writer (np.savez_compressed, level 6)", lambda out: _old_writer(buffer, out))
    ]
    for level in (1, 6):
        cases.append((f"level {level}, no threads", _saver(buffer, level, workers=0)))
    for level in (None, 0, 1, 3, 6, 9):
        label = "stored" if level is None else f"level {level}"
        cases.append((f"{label}, {default_workers()} writers", _saver(buffer, level, None)))
    lines = ["| writer | wall (s) | CPU (s) | on disk |", "|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, run in cases:
            wall, cpu, size = _timed(run, Path(tmp) / "c")
            lines.append(f"| {label} | {wall:.2f} | {cpu:.2f} | {size:,.1f} MB |")
            print(lines[-1], flush=True)
    load_after = os.getloadavg()
    table = "\n".join(lines)
    if write is not None:
        section = (
            "## Capture compression levels\n\n"
            f"`python tools/bench_capture.py --part levels` — one {agents} × {ticks} town "
            "capture (scripted) saved in one process by each writer; CPU is the process's (all "
            "threads). The previous writer is `save_replay_sample` per sample (npz and sidecar "
            "only, no manifest or metrics file). "
            f"{_machine()}; {_load_note(load_before, load_after)}\n\n{table}\n"
        )
        replace_section(write, "Capture compression levels", section)


def _codec_rate(codec: Any, level: int, rows: list[bytes], chunk: int) -> tuple[float, float]:
    """(MB/s, compression ratio) of ``codec`` at ``level`` over ``rows``, each deflated in
    pieces of ``chunk`` bytes as the capture does (best of 3)."""
    best, packed = float("inf"), 0
    for _ in range(3):
        start, packed = time.perf_counter(), 0
        for row in rows:
            view = memoryview(row)
            for at in range(0, len(row), chunk):
                packed += len(codec.block(view[at : at + chunk], level))
        best = min(best, time.perf_counter() - start)
    total = sum(len(r) for r in rows)
    return total / best / 1e6, total / packed


def _crc_rate(codec: Any, rows: list[bytes]) -> float:
    start = time.perf_counter()
    for _ in range(3):
        for row in rows:
            codec.crc32(row, 0)
    return 3 * sum(len(r) for r in rows) / (time.perf_counter() - start) / 1e9


def run_codecs_part(write: Path | None, agents: int = 2048, ticks: int = 200) -> None:
    """Deflate and CRC-32 speed of each codec on the town's map and feature rows."""
    from townlet.policy.replay.deflate import ZLIB

    recorder = capture_frames(scaled_world_config(agents), "scripted", ticks, 0).recorder
    assert recorder.maps is not None
    data = {
        "map": ([bytes(m) for m in recorder.maps], ticks * recorder.maps[0, 0].nbytes // 4),
        "features": ([bytes(f) for f in recorder.features], ticks * recorder.features[0, 0].nbytes),
    }
    codecs = [(ZLIB, 1), (ZLIB, 6)] + ([(ISAL, 1), (ISAL, 2), (ISAL, 3)] if ISAL else [])
    lines = [
        "| member | codec | level | MB/s | ratio | × zlib 1 speed |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for member, (rows, chunk) in data.items():
        base = 0.0
        for codec, level in codecs:
            rate, ratio = _codec_rate(codec, level, rows, chunk)
            base = base or rate
            lines.append(f"| {member} | {codec.name} | {level} | {rate:,.0f} | {ratio:.1f} "
                         f"| {rate / base:.2f} |")  # fmt: skip
            print(lines[-1], flush=True)
    maps = data["map"][0]
    crcs = [(c.name, _crc_rate(c, maps)) for c in ([ZLIB] + ([ISAL] if ISAL else []))]
    crc_note = ", ".join(f"{name} {rate:.1f} GB/s" for name, rate in crcs)
    print("CRC-32:", crc_note)
    if write is not None:
        section = (
            "## Capture deflate codecs\n\n"
            f"`python tools/bench_capture.py --part codecs` — the map and feature rows of a "
            f"{agents} × {ticks} town capture (scripted), each deflated as the capture command "
            "does (maps in pieces of a quarter of the capture, each by a fresh compressor, "
            "sync-flushed; features whole), one thread, best of 3. Ratio = raw ÷ deflated "
            f"bytes. CRC-32 of the maps: {crc_note}. {_machine()}.\n\n" + "\n".join(lines) + "\n"
        )
        replace_section(write, "Capture deflate codecs", section)
