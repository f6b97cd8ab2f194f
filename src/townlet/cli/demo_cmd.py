"""``townlet-train demo``: the main job with no arguments needed — scripted demonstrations in the
town → BC to its plateau → anneal on fresh rollouts → held-out evaluation against plateau BC,
the scripted expert and random → promotion decision (see :mod:`townlet.policy.training.demo`),
over run seeds 0, 1, 2 in parallel processes (``--seeds``; ``--seed N`` runs one seed into
``--out`` itself). Prints a short human summary (``--format json``: the summary record); stage
lines go to stderr as they finish.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from townlet.cli import UsageError
from townlet.cli._common import check_out_dir, cli_run_dir_errors, print_json
from townlet.cli._launch import collective
from townlet.cli._resumable import record_rerun
from townlet.cli._train_common import check_seed, set_threads

DEFAULT_OUT = Path("runs/demo")


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="the main job: demonstrations -> BC -> anneal -> evaluation -> promotion",
        description=(
            "Capture scripted demonstrations in the embedded town, behaviour-clone them, anneal "
            "to PPO on fresh rollouts (bc_weight falling to 0), compare the BC and final "
            "policies on the same seeded episodes, and decide promotion. Writes checkpoints/, "
            "telemetry.jsonl, anneal_results.json, promotion.json, summary.json and "
            "training.png into --out."
        ),
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"run dir ({DEFAULT_OUT})")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        default="0,1,2",
        help="run seeds, comma-separated, each into --out/seed_<k> (0,1,2)",
    )
    seeds.add_argument("--seed", type=int, help="one run seed, into --out itself")
    parser.add_argument(
        "--jobs", type=int, help="seeds run in parallel (one per seed, at most one per core)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4 cycles of 500-tick rollouts, 8 evaluation episodes (about a third of the time)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start again in an --out that holds another run"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip training.png (no matplotlib)")
    parser.add_argument("--format", choices=("human", "json"), default="human")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or stage lines")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1)")
    parser.set_defaults(handler=run_demo_cmd)


def _settings(quick: bool) -> Any:
    from townlet.policy.training import demo

    return demo.QUICK if quick else demo.DemoSettings()


def _reasons(reasons: list[str]) -> str:
    """Group ``loss_flag_cycle_5.0``-style reasons by kind: `` (loss flag: cycles 5, 8; …)``."""
    groups: dict[str, list[str]] = {}
    for reason in reasons:
        kind, _, cycle = reason.partition("_cycle_")
        label = kind.replace("_", " ")
        groups.setdefault(label, [])
        if cycle:
            groups[label].append(cycle.removesuffix(".0"))
    parts = [f"{k}: cycles {', '.join(v)}" if v else k for k, v in groups.items()]
    return f" ({'; '.join(parts)})" if parts else ""


def human_summary(out: Path, summary: dict[str, Any]) -> str:
    """The few lines the demo prints at the end of one run seed."""
    r, s, bc = summary["returns"], summary["settings"], summary["bc"]
    vs_bc, vs_scripted = r["final_vs_bc"], r["final_vs_scripted"]
    pct = "" if r["improvement_pct"] is None else f" ({r['improvement_pct']:+.1f}%)"
    reasons = _reasons(summary["promotion"]["reasons"])
    lines = [
        f"townlet demo -> {out} (seed {summary['seed']}, {summary['wall_sec']:.0f} s)",
        f"  demonstrations: {s['demo_ticks']} ticks of the scripted expert, {s['agents']} agents",
        f"  BC to its plateau: epoch {bc['best_epoch']} of {bc['epochs']}, held-out accuracy "
        f"{bc['accuracy']:.3f} (gate {bc['threshold']})",
        f"  anneal: {s['cycles']} PPO cycles on fresh rollouts of {s['rollout_ticks']} ticks, "
        f"bc_weight {s['bc_weight_start']:.2f} -> {s['bc_weight_end']:.2f}: "
        f"{summary['anneal']['status']}",
        f"  held-out evaluation ({r['episodes']} episodes x {r['episode_ticks']} ticks, same "
        f"seeds, {r['mode']} actions), mean return per agent [95% CI]:",
        "    " + " | ".join(f"{label} {_ci(r, name)}" for name, label in _LABELS),
        f"  BC->PPO vs BC: {r['improvement']:+.1f}{pct}, paired lower bound "
        f"{vs_bc['lower_bound']:+.1f}; vs scripted: {vs_scripted['mean_difference']:+.1f}, "
        f"lower bound {vs_scripted['lower_bound']:+.1f}",
        f"  promotion: {summary['promotion']['decision']}{reasons}",
        "  files: summary.json training.png telemetry.jsonl anneal_results.json "
        "anneal_summary.json promotion.json checkpoint.pt bc_checkpoint.pt checkpoints/ demos/",
    ]
    return "\n".join(lines)


_LABELS = (("random", "random"), ("bc", "BC"), ("final", "BC->PPO"), ("scripted", "scripted"))


def _ci(returns: dict[str, Any], name: str) -> str:
    low, high = returns[f"{name}_ci95"]
    return f"{returns[f'{name}_mean']:.1f} [{low:.0f}, {high:.0f}]"


def seeds_human_summary(out: Path, aggregate: dict[str, Any]) -> str:
    """The lines the demo prints at the end of a multi-seed run."""
    ev, verdict = aggregate["evaluation"], aggregate["verdict"]
    lines = [
        f"townlet demo -> {out} (seeds {','.join(map(str, aggregate['seeds']))}, "
        f"{aggregate['jobs']} in parallel, {aggregate['wall_sec']:.0f} s)",
        f"  held-out evaluation per seed: {ev['episodes']} episodes x {ev['episode_ticks']} "
        f"ticks, {ev['mode']} actions; mean return per agent, paired lower bounds:",
    ]
    for run in aggregate["runs"]:
        lines.append(
            f"    seed {run['seed']}: random {run['random_mean']:.1f} | BC {run['bc_mean']:.1f} | "
            f"BC->PPO {run['final_mean']:.1f} | scripted {run['scripted_mean']:.1f}; "
            f"vs BC {run['final_vs_bc']['lower_bound']:+.1f}, vs scripted "
            f"{run['final_vs_scripted']['lower_bound']:+.1f}; {run['decision']}"
            f"{_reasons(run['reasons'])}"
        )
    pooled = aggregate["pooled"]
    for key, label in (("final_vs_bc", "BC"), ("final_vs_scripted", "scripted")):
        low, high = pooled[key]["ci95"]
        lines.append(
            f"  pooled BC->PPO - {label}: {pooled[key]['mean_difference']:+.1f} per episode "
            f"[{low:+.1f}, {high:+.1f}] over {pooled[key]['episodes']} episodes"
        )
    lines.append(
        f"  beats plateau BC on every seed: {'yes' if verdict['beats_bc_every_seed'] else 'no'};"
        f" beats the scripted expert on every seed: "
        f"{'yes' if verdict['beats_scripted_every_seed'] else 'no'}; promoted "
        f"{verdict['promoted']} of {len(aggregate['runs'])}"
    )
    lines.append("  files: summary.json training.png seed_<k>/ (one full demo per seed)")
    return "\n".join(lines)


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: expected distinct seeds >= 0, got {text!r}")
    return seeds


def _record_runs(args: argparse.Namespace, seeds: list[int] | None) -> None:
    """``run.json`` in ``--out`` (and, for several seeds, in each ``seed_<k>`` as the one-seed
    command that continues that seed alone), so that ``townlet-train resume DIR`` re-runs it:
    the demo resumes from the run state each seed's directory holds."""
    from townlet.policy.training.demo_seeds import seed_dir

    record_rerun(args, kind="demo", inputs=())
    for seed in seeds or ():
        one = argparse.Namespace(**vars(args))
        one.seed, one.out, one.jobs, one.resume_dir = seed, seed_dir(args.out, seed), None, None
        record_rerun(one, kind="demo", inputs=())


def run_demo_cmd(args: argparse.Namespace) -> int:
    """Handler of ``townlet-train demo``."""
    from townlet.policy.training.demo import run_demo
    from townlet.policy.training.demo_plot import require_matplotlib
    from townlet.policy.training.demo_seeds import run_demo_seeds

    if args.seed is not None:
        check_seed(args.seed)
    check_out_dir(args.out)
    seeds = None if args.seed is not None else _seed_list(args.seeds)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    if not args.no_plot:
        try:
            require_matplotlib()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    set_threads(args.threads)
    group = collective(args)
    quiet = args.quiet or not group.is_root

    def report(line: str) -> None:
        if not quiet:
            sys.stderr.write(f"  {line}\n")

    if group.world_size > 1 and seeds is not None:
        raise UsageError("under torchrun the demo runs one seed: give --seed N (not --seeds)")
    if group.is_root:
        _record_runs(args, seeds)
    common = {"settings": _settings(args.quick), "plot": not args.no_plot, "report": report,
              "overwrite": args.overwrite}  # fmt: skip
    with cli_run_dir_errors():
        if seeds is None:
            summary = run_demo(args.out, seed=args.seed, quiet=quiet, group=group, **common)
            text = human_summary(args.out, summary)
        else:
            summary = run_demo_seeds(args.out, seeds=seeds, jobs=args.jobs, **common)
            text = seeds_human_summary(args.out, summary)
    if not group.is_root:
        return 0
    if args.format == "json":
        print_json(summary)
    else:
        sys.stdout.write(text + "\n")
    return 0
