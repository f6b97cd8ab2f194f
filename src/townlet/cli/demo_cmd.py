"""``townlet-train demo``: the main job with no arguments needed — scripted demonstrations in the
town → BC → anneal on fresh rollouts → evaluation → promotion decision (see
:mod:`townlet.policy.training.demo`). Prints a short human summary (``--format json``: the
summary record); stage lines go to stderr as they finish.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from townlet.cli import UsageError
from townlet.cli._common import check_out_dir, print_json
from townlet.cli._launch import collective
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
    parser.add_argument("--seed", type=int, default=0, help="run seed (0)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="500-tick rollouts, a 4 x 500-tick evaluation (about half the time)",
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
    """The few lines the demo prints at the end."""
    r, s, bc = summary["returns"], summary["settings"], summary["bc"]
    gate = r["behaviour_gate"]
    pct = "" if r["improvement_pct"] is None else f" ({r['improvement_pct']:+.1f}%)"
    verdict = "passed" if bc["passed"] else "FAILED"
    reasons = _reasons(summary["promotion"]["reasons"])
    lines = [
        f"townlet demo -> {out} (seed {summary['seed']}, {summary['wall_sec']:.0f} s)",
        f"  demonstrations: {s['demo_ticks']} ticks of the scripted expert, {s['agents']} agents",
        f"  BC: held-out accuracy {bc['accuracy']:.3f} (gate {bc['threshold']}: {verdict})",
        f"  anneal: {s['cycles']} PPO cycles on fresh rollouts of {s['rollout_ticks']} ticks, "
        f"bc_weight {s['bc_weight_start']:.2f} -> 0: {summary['anneal']['status']}",
        f"  evaluation ({r['episodes']} episodes x {r['episode_ticks']} ticks, same seeds, "
        f"{'greedy' if r['greedy'] else 'sampled actions'}), mean return per agent:",
        f"    random {r['random_mean']:.1f} | BC {r['bc_mean']:.1f} | BC->PPO "
        f"{r['final_mean']:.1f} | scripted expert {r['scripted_mean']:.1f}",
        f"  BC->PPO vs BC: {r['improvement']:+.1f}{pct}; paired gate lower bound "
        f"{gate['lower_bound']:+.1f} ({'passed' if gate['passed'] else 'failed'})",
        f"  promotion: {summary['promotion']['decision']}{reasons}",
        "  files: summary.json training.png telemetry.jsonl anneal_results.json "
        "anneal_summary.json promotion.json checkpoint.pt checkpoints/ demos/",
    ]
    return "\n".join(lines)


def run_demo_cmd(args: argparse.Namespace) -> int:
    """Handler of ``townlet-train demo``."""
    from townlet.policy.training.demo import run_demo
    from townlet.policy.training.demo_plot import require_matplotlib

    check_seed(args.seed)
    check_out_dir(args.out)
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

    summary = run_demo(
        args.out,
        seed=args.seed,
        settings=_settings(args.quick),
        quiet=quiet,
        plot=not args.no_plot,
        report=report,
        group=group,
    )
    if not group.is_root:
        return 0
    if args.format == "json":
        print_json(summary)
    else:
        sys.stdout.write(human_summary(args.out, summary) + "\n")
    return 0
