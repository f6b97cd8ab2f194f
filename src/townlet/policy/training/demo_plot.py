"""The demo's pictures. ``training.png`` of one run seed: PPO losses per epoch with the anneal
stages marked, the rollout return per cycle with each stage's outcome, and the held-out returns
of random, plateau BC, final and scripted policies with 95% intervals. The multi-seed
``training.png``: the same four policies per run seed, the paired differences final − BC and
final − scripted per seed, and the rollout return per cycle of every seed. Needs matplotlib (the
``plot`` extra), imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from townlet.dto.policy import PPOTrainingResult

PLOT_HINT = "the demo plot needs matplotlib: pip install 'townlet[plot]' (or pass --no-plot)"


def require_matplotlib() -> None:
    """Raise ``ImportError`` with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(PLOT_HINT) from exc


def _loss_panel(ax: Any, epochs: Sequence[PPOTrainingResult]) -> None:
    x = list(range(1, len(epochs) + 1))
    ax.plot(x, [e.loss_policy for e in epochs], label="policy loss", color="tab:blue")
    ax.plot(x, [e.loss_entropy for e in epochs], label="entropy", color="tab:green")
    bc = [e.loss_bc if e.loss_bc is not None else float("nan") for e in epochs]
    ax.plot(x, bc, label="BC cross-entropy", color="tab:purple", linestyle="--")
    value = ax.twinx()
    value.plot(x, [e.loss_value for e in epochs], color="tab:orange", alpha=0.6)
    value.set_ylabel("value loss", color="tab:orange")
    for i, e in enumerate(epochs):
        if e.critic_warmup:
            ax.axvspan(i + 0.5, i + 1.5, color="0.85", zorder=0)
        if i and e.anneal_cycle != epochs[i - 1].anneal_cycle:
            ax.axvline(i + 0.5, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel("PPO epoch (grey: critic warm-up, dotted: next cycle)")
    ax.set_title("PPO losses per epoch\n(anneal cycles 1, 2, … left to right)")
    ax.legend(loc="center right", fontsize=8)


def _rollout_panel(
    ax: Any, summary: Mapping[str, Any], stages: Sequence[Mapping[str, Any]]
) -> None:
    points = [
        (int(stage["cycle"]), ret, stage)
        for stage, ret in zip(stages, summary["rollout_returns"], strict=False)
        if ret is not None
    ]
    ax.plot([p[0] for p in points], [p[1] for p in points], color="tab:blue", marker="o")
    for cycle, ret, stage in points:
        flagged = any(stage.get(f"anneal_{n}_flag") for n in ("loss", "queue", "intensity"))
        ax.scatter([cycle], [ret], color="tab:red" if flagged else "tab:green", zorder=3, s=40)
        ax.annotate(f"{stage['bc_weight']:.2f}", (cycle, ret), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=7)  # fmt: skip
    ax.set_xticks([p[0] for p in points])
    ax.set_xlabel("anneal cycle (labels: bc_weight)")
    ax.set_ylabel("reward per agent over the rollout")
    ax.set_title("Fresh-rollout return per PPO stage\n(green: no guardrail flag, red: flagged)")


def _eval_panel(ax: Any, returns: Mapping[str, Any]) -> None:
    names = ["random", "bc", "final", "scripted"]
    labels = ["random", "BC (plateau)", "BC→PPO", "scripted expert"]
    colors = ["0.6", "tab:purple", "tab:blue", "tab:green"]
    means = [returns[f"{n}_mean"] for n in names]
    errors = [
        [m - returns[f"{n}_ci95"][0] for n, m in zip(names, means, strict=True)],
        [returns[f"{n}_ci95"][1] - m for n, m in zip(names, means, strict=True)],
    ]
    ax.bar(labels, means, yerr=errors, color=colors, capsize=4)
    for i, mean in enumerate(means):
        ax.text(i, mean / 2, f"{mean:.1f}", ha="center", va="center", fontsize=10,
                color="white", fontweight="bold")  # fmt: skip
    ax.set_ylabel("episode return (mean over agents), 95% CI")
    vs_bc, vs_scripted = returns["final_vs_bc"], returns["final_vs_scripted"]
    ax.set_title(
        f"Held-out evaluation: {returns['episodes']} episodes × {returns['episode_ticks']} "
        f"ticks, same seeds, {returns['mode']} actions\n"
        f"BC→PPO − BC = {vs_bc['mean_difference']:+.1f} (lower bound "
        f"{vs_bc['lower_bound']:+.1f}); − scripted = {vs_scripted['mean_difference']:+.1f}"
    )


def write_plot(out: Path, summary: Mapping[str, Any]) -> Path:
    """Draw ``out/training.png`` from ``out/telemetry.jsonl``, ``out/anneal_results.json`` and
    the demo ``summary``; return its path."""
    from townlet._input_limits import loads_json, read_text, show_path
    from townlet.dto.telemetry import read_telemetry
    from townlet.errors import ConfigError
    from townlet.plots import import_pyplot, save_figure

    plt = import_pyplot()

    epochs = read_telemetry(out / "telemetry.jsonl")
    where = f"{show_path(out / 'anneal_results.json')}: anneal results"
    stages = loads_json(
        read_text(out / "anneal_results.json", ConfigError, where), ConfigError, where
    )
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
    _loss_panel(axes[0], epochs)
    _rollout_panel(axes[1], summary, stages)
    _eval_panel(axes[2], summary["returns"])
    promotion = summary["promotion"]
    fig.suptitle(
        f"townlet demo (seed {summary['seed']}): BC plateau at epoch "
        f"{summary['bc']['best_epoch']}, held-out accuracy {summary['bc']['accuracy']:.3f}; "
        f"BC→PPO {summary['returns']['improvement']:+.1f} vs BC; anneal "
        f"{summary['anneal']['status']}; promotion {promotion['decision']}",
        fontsize=12,
    )
    fig.tight_layout()
    return save_figure(fig, out / "training.png")


_POLICY_STYLE = (
    ("random", "random", "0.6"),
    ("bc", "BC (plateau)", "tab:purple"),
    ("final", "BC→PPO", "tab:blue"),
    ("scripted", "scripted expert", "tab:green"),
)


def _seeds_returns_panel(ax: Any, runs: Sequence[Mapping[str, Any]]) -> None:
    width = 0.2
    for k, (name, label, color) in enumerate(_POLICY_STYLE):
        xs = [i + (k - 1.5) * width for i in range(len(runs))]
        means = [run[f"{name}_mean"] for run in runs]
        low = [m - run[f"{name}_ci95"][0] for m, run in zip(means, runs, strict=True)]
        high = [run[f"{name}_ci95"][1] - m for m, run in zip(means, runs, strict=True)]
        ax.bar(xs, means, width, yerr=[low, high], color=color, capsize=3, label=label)
    ax.set_xticks(range(len(runs)), [f"seed {run['seed']}" for run in runs])
    ax.set_ylabel("held-out episode return (95% CI)")
    ax.set_title("Held-out returns per run seed")
    ax.legend(fontsize=8)


def _seeds_gap_panel(ax: Any, runs: Sequence[Mapping[str, Any]]) -> None:
    for offset, key, label, color in (
        (-0.15, "final_vs_bc", "BC→PPO − BC", "tab:purple"),
        (0.15, "final_vs_scripted", "BC→PPO − scripted", "tab:green"),
    ):
        xs = [i + offset for i in range(len(runs))]
        gaps = [run[key]["mean_difference"] for run in runs]
        lows = [g - run[key]["lower_bound"] for g, run in zip(gaps, runs, strict=True)]
        ax.errorbar(xs, gaps, yerr=[lows, lows], fmt="o", color=color, capsize=4, label=label)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xticks(range(len(runs)), [f"seed {run['seed']}" for run in runs])
    ax.set_ylabel("paired difference per episode (95% CI)")
    ax.set_title("Paired gain of the final policy\n(above 0 with its whole interval: a win)")
    ax.legend(fontsize=8)


def _seeds_rollout_panel(ax: Any, runs: Sequence[Mapping[str, Any]]) -> None:
    longest = 1
    for run in runs:
        values = [r for r in run["rollout_returns"] if r is not None]
        ax.plot(range(1, len(values) + 1), values, marker="o", label=f"seed {run['seed']}")
        longest = max(longest, len(values))
    ax.set_xticks(range(1, longest + 1))
    ax.set_xlabel("PPO cycle (cycle 1 is the BC policy's own rollout)")
    ax.set_ylabel("reward per agent over the rollout")
    ax.set_title("Fresh-rollout return per cycle")
    ax.legend(fontsize=8)


def write_seeds_plot(
    out: Path, aggregate: Mapping[str, Any], summaries: Sequence[Mapping[str, Any]]
) -> Path:
    """Draw ``out/training.png`` comparing the run seeds of a multi-seed demo."""
    from townlet.plots import import_pyplot, save_figure

    del summaries  # the aggregate rows carry what the picture shows
    plt = import_pyplot()
    runs = aggregate["runs"]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
    _seeds_returns_panel(axes[0], runs)
    _seeds_gap_panel(axes[1], runs)
    _seeds_rollout_panel(axes[2], runs)
    ev, verdict = aggregate["evaluation"], aggregate["verdict"]
    fig.suptitle(
        f"townlet demo over run seeds {aggregate['seeds']}: {ev['episodes']} held-out episodes "
        f"× {ev['episode_ticks']} ticks per seed, {ev['mode']} actions; beats plateau BC on "
        f"every seed: {'yes' if verdict['beats_bc_every_seed'] else 'no'}; promoted "
        f"{verdict['promoted']} of {len(runs)}",
        fontsize=12,
    )
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out / "training.png")
