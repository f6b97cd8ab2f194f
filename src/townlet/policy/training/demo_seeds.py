"""The demo over several run seeds: ``run_demo_seeds(out_dir, seeds=(0, 1, 2))``.

Each run seed is a whole demo (:func:`~townlet.policy.training.demo.run_demo`) in
``out_dir/seed_<k>``, run in parallel processes (``jobs``, at most one per CPU core; each uses
one torch thread). The comparison across seeds goes to ``out_dir/summary.json`` and
``out_dir/training.png``: per seed the four policies' held-out returns with 95% intervals and the
paired differences final − BC and final − scripted, and the differences pooled over all
episodes of all seeds. One seed can flatter; the verdict says whether the final policy beat the
plateau BC (paired lower bound > 0) and the scripted expert on *every* seed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from townlet._atomic import write_text_atomic
from townlet.errors import ConfigError

SUMMARY_FILE = "summary.json"


def seed_dir(out: Path, seed: int) -> Path:
    """Where run seed ``seed`` of a multi-seed demo lives."""
    return out / f"seed_{seed}"


def _run_one(out: str, seed: int, settings: Any, plot: bool, overwrite: bool) -> dict[str, Any]:
    # A worker process: one torch thread, so that parallel seeds do not fight over cores.
    from townlet.policy.training.demo import run_demo

    try:
        import torch
    except ImportError:  # run_demo raises the install hint itself
        return run_demo(out, seed=seed, settings=settings, quiet=True, plot=plot)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_demo(
            out, seed=seed, settings=settings, quiet=True, plot=plot, overwrite=overwrite
        )
    finally:
        torch.set_num_threads(previous)


def default_jobs(seeds: Sequence[int]) -> int:
    """One process per seed, at most one per CPU core."""
    return max(1, min(len(seeds), os.cpu_count() or 1))


def run_demo_seeds(
    out_dir: str | os.PathLike[str],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    settings: Any = None,
    jobs: int | None = None,
    plot: bool = True,
    overwrite: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the demo for each of ``seeds`` (``jobs`` at a time) and write the comparison across
    seeds; return it. Raises ``ConfigError`` for no seeds, a repeated or negative seed, or
    ``jobs`` < 1; whatever a seed's demo raises."""
    from townlet.policy.training.demo import DemoSettings
    from townlet.policy.training.demo_plot import require_matplotlib, write_seeds_plot

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"seeds: expected distinct run seeds >= 0, got {seeds}")
    jobs = default_jobs(seeds) if jobs is None else jobs
    if jobs < 1:
        raise ConfigError(f"jobs: expected >= 1, got {jobs}")
    if plot:
        require_matplotlib()
    settings = DemoSettings() if settings is None else settings
    say = report or (lambda line: None)
    out, started = Path(out_dir), time.perf_counter()
    args = [(str(seed_dir(out, s)), s, settings, plot, overwrite) for s in seeds]
    if jobs == 1:
        summaries = [_run_one(*a) for a in args]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            summaries = list(pool.map(_run_one, *zip(*args, strict=True)))
    for summary in summaries:
        say(_seed_line(summary))
    aggregate = seeds_summary(summaries, settings)
    aggregate["jobs"] = jobs
    if plot:
        write_seeds_plot(out, aggregate, summaries)
    aggregate["wall_sec"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / SUMMARY_FILE, json.dumps(aggregate, indent=2) + "\n")
    return aggregate


def _seed_line(summary: dict[str, Any]) -> str:
    r = summary["returns"]
    return (
        f"seed {summary['seed']}: BC {r['bc_mean']:.1f} -> final {r['final_mean']:.1f} "
        f"(paired lower bound {r['final_vs_bc']['lower_bound']:+.1f}); scripted "
        f"{r['scripted_mean']:.1f}; promotion {summary['promotion']['decision']}"
    )


def _run_row(summary: dict[str, Any]) -> dict[str, Any]:
    r = summary["returns"]
    names = ("random", "bc", "final", "scripted")
    return {
        "seed": summary["seed"],
        "dir": f"seed_{summary['seed']}",
        "bc_best_epoch": summary["bc"]["best_epoch"],
        "bc_accuracy": summary["bc"]["accuracy"],
        **{f"{n}_mean": r[f"{n}_mean"] for n in names},
        **{f"{n}_ci95": r[f"{n}_ci95"] for n in names},
        **{
            key: {k: r[key][k] for k in ("mean_difference", "lower_bound", "passed")}
            for key in ("final_vs_bc", "final_vs_scripted")
        },
        "rollout_returns": summary["rollout_returns"],
        "anneal_status": summary["anneal"]["status"],
        "decision": summary["promotion"]["decision"],
        "reasons": summary["promotion"]["reasons"],
    }


def seeds_summary(summaries: Sequence[dict[str, Any]], settings: Any) -> dict[str, Any]:
    """The comparison across run seeds (see the module docstring)."""
    from townlet.policy.training.demo_stats import pooled_paired

    rows = [_run_row(s) for s in summaries]
    first = summaries[0]["returns"]
    return {
        "seeds": [row["seed"] for row in rows],
        "settings": attrs.asdict(settings),
        "evaluation": {
            "episodes": first["episodes"],
            "episode_ticks": first["episode_ticks"],
            "mode": first["mode"],
            "seed_offset": settings.eval_seed_offset,
        },
        "runs": rows,
        "pooled": {
            f"{a}_vs_{b}": pooled_paired(summaries, a, b)
            for a, b in (("final", "bc"), ("final", "scripted"), ("bc", "scripted"))
        },
        "verdict": {
            "beats_bc_every_seed": all(r["final_vs_bc"]["lower_bound"] > 0 for r in rows),
            "beats_scripted_every_seed": all(
                r["final_vs_scripted"]["lower_bound"] > 0 for r in rows
            ),
            "above_scripted_mean_every_seed": all(
                r["final_mean"] > r["scripted_mean"] for r in rows
            ),
            "promoted": sum(r["decision"] == "PROMOTE" for r in rows),
        },
        "wall_sec": None,
    }
