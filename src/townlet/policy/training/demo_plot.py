"""The demo's picture, ``training.png``: PPO losses per epoch with the anneal stages marked,
the rollout return per cycle with each stage's outcome, and the evaluation returns of random,
BC, final and scripted policies. Needs matplotlib (the ``plot`` extra), imported lazily.
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
    labels = ["random", "BC", "BC→PPO", "scripted expert"]
    colors = ["0.6", "tab:purple", "tab:blue", "tab:green"]
    means = [returns[f"{n}_mean"] for n in names]
    ax.bar(labels, means, yerr=[returns[f"{n}_std"] for n in names], color=colors, capsize=4)
    for i, mean in enumerate(means):
        ax.text(i, mean / 2, f"{mean:.1f}", ha="center", va="center", fontsize=10,
                color="white", fontweight="bold")  # fmt: skip
    ax.set_ylabel("episode return (mean over agents)")
    ax.set_title(
        f"Evaluation: {returns['episodes']} episodes × {returns['episode_ticks']} ticks, "
        f"same seeds, {'greedy' if returns['greedy'] else 'sampled'}\n"
        f"BC→PPO − BC = {returns['improvement']:+.1f}"
    )


def write_plot(out: Path, summary: Mapping[str, Any]) -> Path:
    """Draw ``out/training.png`` from ``out/telemetry.jsonl``, ``out/anneal_results.json`` and
    the demo ``summary``; return its path."""
    import json

    from townlet.dto.telemetry import read_telemetry
    from townlet.plots import import_pyplot, save_figure

    plt = import_pyplot()

    epochs = read_telemetry(out / "telemetry.jsonl")
    stages = json.loads((out / "anneal_results.json").read_text(encoding="utf-8"))
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
    _loss_panel(axes[0], epochs)
    _rollout_panel(axes[1], summary, stages)
    _eval_panel(axes[2], summary["returns"])
    promotion = summary["promotion"]
    fig.suptitle(
        f"townlet demo (seed {summary['seed']}): BC held-out accuracy "
        f"{summary['bc']['accuracy']:.3f}; BC→PPO return {summary['returns']['improvement']:+.1f} "
        f"vs BC; anneal {summary['anneal']['status']}; promotion {promotion['decision']}",
        fontsize=12,
    )
    fig.tight_layout()
    return save_figure(fig, out / "training.png")
