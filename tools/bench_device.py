"""Devices and the compiled update: what a GPU (or torch.compile on CPU) buys, in one run.

Usage::

    python tools/bench_device.py                       # cpu, plus cuda when there is one
    python tools/bench_device.py --capture-dir DIR     # reuse a 256-agent capture
    python tools/bench_device.py --write-docs          # also update docs/benchmarks.md

Two measurements, each printed with ratios against its peer measured in the same run:

1. **Minibatch update**, eager (``ppo_minibatch_update``) vs compiled (``make_ppo_update``) on
   the Townlet network (map 4×11×11, 68 features, 4 actions, hidden 256), default ``PPOConfig``,
   across minibatch sizes. The compiled mode is ``--compile`` (``auto``: a CUDA graph on CUDA;
   on CPU ``auto`` means eager, so the CPU row uses ``--cpu-compile``, ``inductor`` by default).
   Eager and compiled are timed in alternating rounds (``--rounds-update``), so that machine
   noise hits both alike; each round is the mean wall time per update over at least
   ``--min-updates`` updates and ``--seconds`` seconds, with a device sync before and after the
   round, none inside it; the figure is the median round. Warm-up (compilation and the
   one-off check against eager included) is not timed.
2. **End-to-end replay PPO** (``train_ppo``, ``--epochs`` epochs, the whole call: reading the
   capture, GAE, every epoch) on a 256-agent × 200-tick town capture, CPU vs the device, eager
   and compiled (on CPU eager only: the compilation would dominate), at the default config
   (replay batch 16, minibatch 32) and with large minibatches (replay batch 256, minibatch
   16,384). Reported as transitions/s.

Without ``--capture-dir`` a capture is made first (``townlet-train capture --agents 256 --ticks
200 --seed 0``, about ten seconds) in a temporary directory. The load average (``uptime``) is
printed and recorded: ratios within one run stay fair on a loaded machine, absolute figures not.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _benchdoc import replace_section
from townlet.cli import main as townlet_train
from townlet.config import PPOConfig
from townlet.policy.nn.compiled import CompiledUpdate
from townlet.policy.nn.device import resolve_device
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay import ReplayDataset, ReplayDatasetConfig
from townlet.policy.training.strategies.ppo import train_ppo
from townlet.policy.training.strategies.ppo.compiled import make_ppo_update
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch
from townlet.policy.training.strategies.ppo.step import (
    init_ppo_state,
    ppo_minibatch_update,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADING = "Devices and the compiled update"
SPEC = NetworkSpec(map_shape=(4, 11, 11), feature_dim=68, action_dim=4, hidden_dim=256)
DEVICE_SIZES = "32,128,512,2048,8192,32768,65536"
CPU_SIZES = "32,512,4096"
E2E_CONFIGS = {
    "default (batch 16, minibatch 32)": (16, PPOConfig()),
    "large (batch 256, minibatch 16384)": (
        256,
        PPOConfig(mini_batch_size=16384, num_mini_batches=4),
    ),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _minibatch(n: int, device: torch.device) -> PPOMinibatch:
    gen = torch.Generator().manual_seed(n)
    mb = PPOMinibatch(
        maps=torch.rand(n, *SPEC.map_shape, generator=gen),
        features=torch.randn(n, SPEC.feature_dim, generator=gen),
        actions=torch.randint(0, SPEC.action_dim, (n,), generator=gen),
        old_log_probs=-torch.rand(n, generator=gen) - 1.0,
        advantages=torch.randn(n, generator=gen),
        returns=torch.randn(n, generator=gen),
        old_values=torch.randn(n, generator=gen),
    )
    return PPOMinibatch(
        **{
            f.name: None if getattr(mb, f.name) is None else getattr(mb, f.name).to(device)
            for f in attrs.fields(PPOMinibatch)
        }
    )


def _round(
    update: Callable[..., Any], state: Any, mb: PPOMinibatch, args: argparse.Namespace
) -> tuple[Any, float]:
    """One timed round: the state after it and the mean ms per update."""
    device, cfg = mb.actions.device, PPOConfig()
    _sync(device)
    start, count = time.perf_counter(), 0
    while count < args.min_updates or time.perf_counter() - start < args.seconds:
        state, _values = update(state, mb, cfg)
        count += 1
    _sync(device)
    return state, (time.perf_counter() - start) / count * 1e3


def _time_pair(
    updates: list[Callable[..., Any]], n: int, device: torch.device, args: argparse.Namespace
) -> list[float]:
    """Median ms per update of each of ``updates``, timed in alternating rounds."""
    mb = _minibatch(n, device)
    params = {k: v.to(device) for k, v in init_ppo_state(SPEC, seed=0).params.items()}
    states = [init_ppo_state(SPEC, seed=0, params=params) for _ in updates]
    for i, update in enumerate(updates):
        for _ in range(args.warmup):
            states[i], _values = update(states[i], mb, PPOConfig())
    times: list[list[float]] = [[] for _ in updates]
    for _ in range(args.rounds_update):
        for i, update in enumerate(updates):
            states[i], ms = _round(update, states[i], mb, args)
            times[i].append(ms)
    return [statistics.median(t) for t in times]


def _fallback_note(update: Any) -> str:
    reason = getattr(update, "fallback_reason", None)
    return "" if reason is None else f"fell back to eager: {reason}"


def bench_updates(
    device: torch.device, sizes: list[int], mode: str, args: argparse.Namespace
) -> list[str]:
    """Rows of the minibatch-update table for ``device``."""
    rows = []
    for n in sizes:
        update = make_ppo_update(mode)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            eager, compiled = _time_pair([ppo_minibatch_update, update], n, device, args)
        note = _fallback_note(update) if isinstance(update, CompiledUpdate) else ""
        row = (
            f"| {device} | {mode} | {n:,} | {eager:.3f} | {compiled:.3f} | "
            f"{eager / compiled:.2f}× | {note} |"
        )
        print(row, flush=True)
        rows.append(row)
    return rows


def make_capture(out: Path) -> Path:
    """A 256-agent × 200-tick scripted town capture in ``out``."""
    argv = ["capture", "--agents", "256", "--ticks", "200", "--seed", "0", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        code = townlet_train([*argv, "--quiet"])
    if code != 0:
        raise SystemExit(f"townlet-train capture failed with exit code {code}")
    return out


def _e2e(capture: Path, batch: int, cfg: PPOConfig, device: torch.device, epochs: int) -> float:
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(capture, batch_size=batch))
    _sync(device)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        run = train_ppo(dataset, cfg=cfg, epochs=epochs, seed=0, device=str(device))
    _sync(device)
    return run.state.steps / (time.perf_counter() - start)


def bench_end_to_end(
    capture: Path, devices: list[torch.device], modes: dict[str, str], args: argparse.Namespace
) -> list[str]:
    """Rows of the end-to-end table: transitions/s and the ratio to CPU eager per config."""
    rows = []
    for label, (batch, cfg) in E2E_CONFIGS.items():
        base: float | None = None
        for device in devices:
            # On CPU the compiled variant is measured per update above; end to end its
            # compilation (tens of seconds per shape) would dominate a short run.
            compiled = modes[device.type] if device.type != "cpu" else "none"
            for mode in dict.fromkeys(("none", compiled)):
                rates = [
                    _e2e(capture, batch, attrs.evolve(cfg, compile=mode), device, args.epochs)
                    for _ in range(args.rounds)
                ]
                rate = statistics.median(rates)
                base = rate if base is None else base
                row = f"| {label} | {device} | {mode} | {rate:,.0f} | {rate / base:.2f}× |"
                print(row, flush=True)
                rows.append(row)
    return rows


def _machine(devices: list[torch.device]) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    gpu = ""
    if any(d.type == "cuda" for d in devices):
        gpu = f", GPU {torch.cuda.get_device_name(0)}"
    return (
        f"{platform.machine()} with {os.cpu_count()} CPU cores{gpu}, torch {torch.__version__}, "
        f"Python {platform.python_version()}, {torch.get_num_threads()} CPU thread(s); "
        f"load average (uptime) at the end: {load}"
    )


def _section(machine: str, update_rows: list[str], e2e_rows: list[str], args: Any) -> str:
    return "\n".join(
        [
            f"## {HEADING}",
            "",
            f"`python tools/bench_device.py` — {machine}. Minibatch update: ms per update, "
            f"median of {args.rounds_update} alternating rounds (≥ {args.min_updates} updates "
            f"and {args.seconds} s each, after warm-up); "
            f"end-to-end: `train_ppo`, {args.epochs} epochs, median of {args.rounds}.",
            "",
            "| device | compile | minibatch | eager ms | compiled ms | speed-up | note |",
            "|---|---|---:|---:|---:|---:|---|",
            *update_rows,
            "",
            "| config | device | compile | transitions/s | vs CPU eager |",
            "|---|---|---|---:|---:|",
            *e2e_rows,
            "",
        ]
    )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="the device besides cpu (auto)")
    parser.add_argument("--compile", default="auto", help="compiled mode on the device (auto)")
    parser.add_argument("--cpu-compile", default="inductor", help="compiled mode on CPU")
    parser.add_argument("--sizes", default=DEVICE_SIZES, help="minibatch sizes on the device")
    parser.add_argument("--cpu-sizes", default=CPU_SIZES, help="minibatch sizes on CPU")
    parser.add_argument("--capture-dir", type=Path, help="256-agent capture (made if absent)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds-update", type=int, default=5)
    parser.add_argument("--min-updates", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-e2e", action="store_true", help="only the minibatch update")
    parser.add_argument("--write-docs", action="store_true", help=f"update {DOC.name}")
    return parser.parse_args()


def main() -> None:
    """Run both measurements, print them, optionally write docs/benchmarks.md."""
    args = _parse()
    torch.set_num_threads(args.threads)
    target = resolve_device(args.device, what="--device")
    devices = [torch.device("cpu")] + ([target] if target.type != "cpu" else [])
    modes = {"cpu": args.cpu_compile}
    if target.type != "cpu":
        modes[target.type] = "cudagraph" if args.compile == "auto" else args.compile
    print(f"# {_machine(devices)}", flush=True)
    update_rows = []
    for device in devices:
        spec = args.cpu_sizes if device.type == "cpu" else args.sizes
        sizes = [int(s) for s in spec.split(",") if s]
        update_rows += bench_updates(device, sizes, modes[device.type], args)
    e2e_rows: list[str] = []
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory() as tmp:
            capture = args.capture_dir or make_capture(Path(tmp) / "capture256")
            e2e_rows = bench_end_to_end(capture, devices, modes, args)
    if args.write_docs:
        replace_section(DOC, HEADING, _section(_machine(devices), update_rows, e2e_rows, args))
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
