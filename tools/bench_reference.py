"""Side by side with the original Townlet: its own training code and ours, same data, one machine.

Usage::

    python tools/bench_reference.py --reference PATH [--reference-python PY] [--rounds 3]
                                    [--epochs 20] [--cases ppo_bs1,ppo_bs3,bc] [--update-docs]

``PATH`` is a checkout of the original Townlet that you provide (it is never copied here);
``PY`` is a Python interpreter that has the reference's dependencies (torch, numpy, pydantic,
pettingzoo, pyyaml, rich, typer — see docs/benchmarks.md for making one), default this one.

Cases, each timed as one whole call after a one-epoch warm-up call in the same process, with
one torch thread:

* ``ppo_bs1`` / ``ppo_bs3``: replay PPO on the reference's ``artifacts/phase4/queue_conflict``
  capture at replay batch size 1 / 3, default PPO settings on both sides — the reference's
  ``PolicyTrainingOrchestrator(load_config(configs/examples/poc_hybrid.yaml)).run_ppo`` against
  ``townlet.train_ppo``; transitions/s;
* ``bc``: behaviour cloning on the idle_v1 manifest, batch 64, no validation split — the
  reference's ``run_bc_training`` against ``townlet.train_bc``; samples/s.

Every measurement runs in a fresh process; ours and the reference's alternate (which goes first
flips every round), so that machine load hits both alike. Prints each side's range and the
ratio ours ÷ reference of every round (the pair run back to back), by wall clock and by the
process's CPU time (on a loaded machine the wall clock also counts time the process waited for
a core), and the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARTIFACTS = REPO.parent / "shared" / "reference" / "townlet-artifacts"
CAPTURE = Path("artifacts/phase4/queue_conflict")
MANIFEST = Path("data/bc_datasets/manifests/idle_v1.json")
REFERENCE_CONFIG = Path("configs/examples/poc_hybrid.yaml")
REFERENCE_MARKER = Path("src/townlet/policy/training_orchestrator.py")
CASES = ("ppo_bs1", "ppo_bs3", "bc")
RESULT_PREFIX = "BENCH-RESULT "
CLOCKS = ("wall", "cpu")
DOC_HEADING = "Side by side with the original Townlet"


class BenchError(Exception):
    """A problem with the user's input or environment, reported as one line (exit 2)."""


# --- worker side: runs in a fresh process, imports only what its side needs -------------------


def _ours(case: str, artifacts: Path) -> tuple[Callable[[int], object], int]:
    from townlet.config import BCConfig, PPOConfig
    from townlet.policy.replay import ReplayDataset, ReplayDatasetConfig
    from townlet.policy.training.strategies.bc import train_bc
    from townlet.policy.training.strategies.ppo import train_ppo

    if case == "bc":

        def run_bc(epochs: int) -> object:
            cfg = BCConfig(epochs=epochs, batch_size=64, val_fraction=0.0)
            return train_bc(artifacts / MANIFEST, cfg=cfg, root=artifacts)

        return run_bc, _manifest_frames(artifacts)
    config = ReplayDatasetConfig.from_capture_dir(artifacts / CAPTURE, batch_size=_bs(case))

    def run_ppo(epochs: int) -> object:
        return train_ppo(ReplayDataset(config), cfg=PPOConfig(), epochs=epochs)

    transitions = sum(b.batch_size * b.timesteps for b in ReplayDataset(config).batches(0))
    return run_ppo, transitions


def _reference(case: str, artifacts: Path, reference: Path) -> tuple[Callable[[int], object], int]:
    from townlet.config.loader import load_config
    from townlet.policy.bc import BCTrainingConfig
    from townlet.policy.training_orchestrator import PolicyTrainingOrchestrator

    from townlet.policy.replay import ReplayDataset, ReplayDatasetConfig

    orchestrator = PolicyTrainingOrchestrator(load_config(reference / REFERENCE_CONFIG))
    if case == "bc":

        def run_bc(epochs: int) -> object:
            cfg = BCTrainingConfig(batch_size=64, epochs=epochs, device="cpu")
            return orchestrator.run_bc_training(manifest=artifacts / MANIFEST, config=cfg)

        return run_bc, _manifest_frames(artifacts)
    config = ReplayDatasetConfig.from_capture_dir(artifacts / CAPTURE, batch_size=_bs(case))

    def run_ppo(epochs: int) -> object:
        return orchestrator.run_ppo(config, epochs=epochs, device_str="cpu")

    transitions = sum(int(b.actions.size) for b in ReplayDataset(config))
    return run_ppo, transitions


def _bs(case: str) -> int:
    return int(case.removeprefix("ppo_bs"))


def _manifest_frames(artifacts: Path) -> int:
    entries = json.loads((artifacts / MANIFEST).read_text())
    return sum(int(e["metrics"]["timesteps"]) for e in entries if e.get("accepted", True))


def _worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    os.chdir(args.artifacts)  # the manifests name their samples relative to this root
    if args.worker == "ours":
        run, per_epoch = _ours(args.case, args.artifacts)
    else:
        run, per_epoch = _reference(args.case, args.artifacts, args.reference)
    run(1)  # warm-up: first-call costs (lazy imports, allocator, kernels) are not compared
    start, cpu_start = time.perf_counter(), time.process_time()
    run(args.epochs)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    work = per_epoch * args.epochs
    payload = {"wall": work / wall, "cpu": work / cpu, "torch": torch.__version__}
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


# --- driver side --------------------------------------------------------------------------------


def _check_reference(reference: Path | None, python: str) -> Path:
    if reference is None:
        raise BenchError(
            "--reference PATH is required: a checkout of the original Townlet (it is not "
            "shipped with townlet; see docs/benchmarks.md)"
        )
    reference = reference.resolve()
    if not reference.is_dir():
        raise BenchError(f"--reference {reference}: no such directory")
    for needed in (REFERENCE_MARKER, REFERENCE_CONFIG):
        if not (reference / needed).is_file():
            raise BenchError(
                f"--reference {reference}: {needed} is missing; expected a checkout of the "
                "original Townlet"
            )
    probe = subprocess.run(
        [python, "-c", "import torch, numpy, pydantic, yaml, pettingzoo, rich, typer"],
        capture_output=True,
        text=True,
        env=_reference_env(reference),
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(
            f"--reference-python {python} cannot import the reference's dependencies ({last}); "
            "make a virtual environment for them (docs/benchmarks.md) and pass its python"
        )
    return reference


def _reference_env(reference: Path) -> dict[str, str]:
    # The reference's package is also called `townlet`: its src/ goes first on the path so
    # that it, not ours, is imported in the reference's processes.
    env = dict(os.environ)
    env["PYTHONPATH"] = str(reference / "src")
    env.pop("PYTHONHOME", None)
    return env


def _measure(side: str, case: str, args: argparse.Namespace) -> tuple[dict[str, float], str]:
    command = [
        args.reference_python if side == "reference" else sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        side,
        "--case",
        case,
        "--epochs",
        str(args.epochs),
        "--artifacts",
        str(args.artifacts),
        "--reference",
        str(args.reference),
    ]
    env = _reference_env(args.reference) if side == "reference" else dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            payload = json.loads(line.removeprefix(RESULT_PREFIX))
            rates = {clock: float(payload[clock]) for clock in CLOCKS}
            return rates, str(payload["torch"])
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
    raise RuntimeError(f"{side} {case} failed (exit {done.returncode}):\n{tail}")


def _load() -> float:
    return os.getloadavg()[0]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


Rates = dict[str, dict[str, dict[str, list[float]]]]
"""case → side → clock → one rate per round."""

LABELS = {
    "ppo_bs1": "PPO queue_conflict, replay batch 1 (transitions/s)",
    "ppo_bs3": "PPO queue_conflict, replay batch 3 (transitions/s)",
    "bc": "BC idle_v1, batch 64 (samples/s)",
}


def _table(rates: Rates, cases: list[str]) -> list[str]:
    lines = [
        "| case | clock | reference | ours | ours ÷ reference, per round | median |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case in cases:
        for clock in CLOCKS:
            ref, ours = rates[case]["reference"][clock], rates[case]["ours"][clock]
            ratios = [o / r for o, r in zip(ours, ref, strict=True)]
            per_round = " / ".join(f"{r:.2f}" for r in ratios)
            lines.append(
                f"| {LABELS[case]} | {clock} | {_span(ref)} | {_span(ours)} | {per_round} "
                f"| **{statistics.median(ratios):.2f}** |"
            )
    return lines


def _span(values: list[float]) -> str:
    return f"{min(values):,.0f}–{max(values):,.0f}"


def _run_rounds(args: argparse.Namespace) -> tuple[Rates, set[str]]:
    rates: Rates = {
        case: {side: {clock: [] for clock in CLOCKS} for side in ("ours", "reference")}
        for case in args.cases
    }
    versions: set[str] = set()
    for round_index in range(args.rounds):
        order = ("ours", "reference") if round_index % 2 == 0 else ("reference", "ours")
        for case in args.cases:
            for side in order:
                got, version = _measure(side, case, args)
                versions.add(f"{side} torch {version}")
                for clock in CLOCKS:
                    rates[case][side][clock].append(got[clock])
            ours, ref = rates[case]["ours"], rates[case]["reference"]
            print(
                f"round {round_index + 1} {case}: ours {ours['wall'][-1]:,.0f}/s, reference "
                f"{ref['wall'][-1]:,.0f}/s, ratio {ours['wall'][-1] / ref['wall'][-1]:.2f} "
                f"(CPU time: {ours['cpu'][-1] / ref['cpu'][-1]:.2f})",
                flush=True,
            )
    return rates, versions


def _drive(args: argparse.Namespace) -> int:
    args.reference = _check_reference(args.reference, args.reference_python)
    args.artifacts = args.artifacts.resolve()
    for needed in (CAPTURE, MANIFEST):
        if not (args.artifacts / needed).exists():
            raise BenchError(f"--artifacts {args.artifacts}: {needed} is missing")
    load_before = _load()
    rates, versions = _run_rounds(args)
    load_after = _load()
    header = (
        f"`python tools/bench_reference.py --reference PATH --reference-python PY` — "
        f"{_cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{', '.join(sorted(versions))}, one torch thread, {args.epochs} epochs after a one-epoch "
        f"warm-up, {args.rounds} rounds of fresh processes alternating ours and the reference's; "
        f"1-minute load average {load_before:.1f} before, {load_after:.1f} after. Rates by "
        "wall clock and by the process's CPU time (which other processes' load disturbs less)."
    )
    lines = _table(rates, args.cases)
    if max(load_before, load_after) > (os.cpu_count() or 1):
        header += (
            " **Taken under load** (the load average exceeded the CPU count: other jobs shared "
            "the machine), so single rounds vary widely; the medians are the figures to quote, "
            "and a quiet re-run will narrow the ranges."
        )
    print()
    print(header)
    print()
    print("\n".join(lines))
    if args.update_docs:
        from _benchdoc import replace_section

        section = f"## {DOC_HEADING}\n\n{header}\n\n" + "\n".join(lines) + "\n"
        replace_section(REPO / "docs" / "benchmarks.md", DOC_HEADING, section)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reference", type=Path, help="checkout of the original Townlet")
    parser.add_argument(
        "--reference-python",
        default=sys.executable,
        help="interpreter with the reference's dependencies (default: this one)",
    )
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", type=lambda s: s.split(","), default=list(CASES))
    parser.add_argument("--update-docs", action="store_true", help="rewrite docs/benchmarks.md")
    parser.add_argument("--worker", choices=("ours", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with the hidden ``--worker``, one measurement)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0
    unknown = [c for c in args.cases if c not in CASES]
    if unknown or args.epochs < 1 or args.rounds < 1:
        parser.error(f"--cases from {', '.join(CASES)}; --epochs and --rounds ≥ 1")
    try:
        return _drive(args)
    except BenchError as exc:
        print(f"bench_reference: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a measurement process failed: its last lines are the message
        print(f"bench_reference: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
