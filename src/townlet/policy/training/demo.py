"""The main job, end to end on the embedded town: ``run_demo(out_dir, seed=0)``.

1. Capture scripted demonstrations of the town (the expert) into ``out_dir/demos``.
2. Anneal: a BC stage (cycle 0, gated on held-out accuracy), then PPO stages on fresh rollouts
   captured each cycle with the current weights, ``bc_weight`` annealing down to 0, the first
   one after a critic warm-up (the orchestrator fold; ``telemetry.jsonl``, ``checkpoints/``,
   ``anneal_results.json``).
3. Evaluate the BC policy and the final policy on the same seeded episodes
   (:func:`~townlet.policy.evaluate.evaluate_policy`; sampled actions, as in training, unless
   ``eval_greedy``), with the scripted expert and a random policy as reference points.
4. Decide promotion: the anneal evaluation, the paired-return behaviour gate of the final policy
   against the BC policy (DESIGN §5.7), and the decision (``promotion.json``).
5. Write ``summary.json`` and ``training.png``.

This module imports without torch; running needs it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from townlet._atomic import write_text_atomic
from townlet.config import AnnealStage, BCConfig, Config, PPOConfig, PromotionConfig, TrainingConfig
from townlet.distributed import LOCAL, Collective
from townlet.errors import TrainingFailedError
from townlet.world import WorldConfig

SUMMARY_FILE = "summary.json"
PLOT_FILE = "training.png"
EVAL_SEED_OFFSET = 1000  # evaluation episodes never share seeds with training rollouts


@attrs.frozen(kw_only=True)
class DemoSettings:
    """The demo's sizes: ``agents`` in the town, ``demo_ticks`` of expert demonstrations,
    ``bc_epochs``, ``cycles`` PPO stages of ``ppo_epochs`` epochs on ``rollout_ticks`` fresh
    ticks each, ``bc_weight`` annealing linearly from ``bc_weight_start`` to 0, PPO
    ``learning_rate``/``gamma``, ``eval_episodes`` of ``eval_ticks`` ticks per evaluation,
    ``bc_threshold`` the BC gate (held-out accuracy), ``eval_greedy`` whether evaluated policies
    take their most likely action (default: they sample, as in training)."""

    agents: int = 8
    demo_ticks: int = 300
    bc_epochs: int = 3
    cycles: int = 8
    ppo_epochs: int = 4
    rollout_ticks: int = 1000
    bc_weight_start: float = 0.2
    learning_rate: float = 3e-4
    gamma: float = 0.95
    critic_warmup_epochs: int = 1
    eval_episodes: int = 6
    eval_ticks: int = 1000
    bc_threshold: float = 0.7
    eval_greedy: bool = False


QUICK = DemoSettings(rollout_ticks=500, eval_episodes=4, eval_ticks=500)


def demo_world(settings: DemoSettings) -> WorldConfig:
    """The town of the demo: the default town with ``settings.agents`` agents."""
    return WorldConfig(num_agents=settings.agents)


def demo_schedule(settings: DemoSettings) -> tuple[AnnealStage, ...]:
    """BC at cycle 0, then ``cycles`` PPO stages with ``bc_weight`` falling linearly to 0."""
    weights = np.linspace(settings.bc_weight_start, 0.0, settings.cycles)
    ppo = tuple(
        AnnealStage(cycle=i + 1, mode="ppo", epochs=settings.ppo_epochs, bc_weight=float(w))
        for i, w in enumerate(weights)
    )
    return (AnnealStage(cycle=0, mode="bc"), *ppo)


def demo_config(settings: DemoSettings, seed: int) -> Config:
    """The demo's config. The value clip is off and ``gamma`` is 0.95 so that the untrained
    critic can catch up with returns of tens of reward units; the loss-drift tolerance is 0.5
    because fresh rollouts of an improving policy move the value loss far more than replay
    data does; one PASS makes a candidate ready (the behaviour gate is the second check)."""
    return Config(
        seed=seed,
        ppo=PPOConfig(learning_rate=settings.learning_rate, gamma=settings.gamma, value_clip=0.0),
        training=TrainingConfig(
            source="anneal",
            rollout_ticks=settings.rollout_ticks,
            bc=BCConfig(epochs=settings.bc_epochs),
            anneal_schedule=demo_schedule(settings),  # type: ignore[arg-type]  # converter=tuple
            anneal_accuracy_threshold=settings.bc_threshold,
            anneal_loss_tolerance=0.5,
            critic_warmup_epochs=settings.critic_warmup_epochs,
        ),
        promotion=PromotionConfig(required_passes=1),
        world=demo_world(settings),
    )


def _evaluate(policy: object, world: WorldConfig, settings: DemoSettings, seed: int) -> Any:
    from townlet.policy.evaluate import evaluate_policy

    env = attrs.evolve(world, episode_length=settings.eval_ticks)
    return evaluate_policy(
        policy,
        env,
        episodes=settings.eval_episodes,
        seed=seed + EVAL_SEED_OFFSET,
        deterministic=settings.eval_greedy,
    )


def _evaluations(
    bc_policy: object, final_policy: object, world: WorldConfig, settings: DemoSettings, seed: int
) -> dict[str, Any]:
    from townlet.policy.training.services.behaviour_gate import paired_return_gate

    runs = {
        name: _evaluate(policy, world, settings, seed)
        for name, policy in (
            ("random", "random"),
            ("bc", bc_policy),
            ("final", final_policy),
            ("scripted", "scripted"),
        )
    }
    gate = paired_return_gate(
        runs["final"].returns,
        runs["bc"].returns,
        margin=0.0,
        min_episodes=min(2, settings.eval_episodes),
    )
    return {"runs": runs, "gate": gate}


def _decide(run: Any, gate: Any, out: Path) -> dict[str, Any]:
    from townlet.policy.training.services.promotion import promote, record_behaviour_gate
    from townlet.policy.training.services.promotion_decision import decide
    from townlet.policy.training.services.promotion_io import save_promotion_state

    decision = decide(run.summary.to_dict())
    promotion = record_behaviour_gate(run.promotion, gate)
    verdict = decision.decision if gate.passed else "HOLD"
    reasons = [*decision.reasons, *([] if gate.passed else ["behaviour_gate_failed"])]
    if verdict == "PROMOTE":
        promotion = promote(promotion, require_behaviour_gate=True)
    save_promotion_state(out / "promotion.json", promotion)
    return {"decision": verdict, "status": decision.status, "reasons": reasons}


def _returns_block(evals: dict[str, Any]) -> dict[str, Any]:
    runs = evals["runs"]
    bc, final = runs["bc"].mean, runs["final"].mean
    return {
        **{f"{name}_mean": run.mean for name, run in runs.items()},
        **{f"{name}_std": run.std for name, run in runs.items()},
        "improvement": final - bc,
        "improvement_pct": 100.0 * (final - bc) / abs(bc) if bc else None,
        "episodes": runs["bc"].episodes,
        "episode_ticks": runs["bc"].lengths[0],
        "greedy": runs["bc"].deterministic,
        "seeds": list(runs["bc"].seeds),
        "behaviour_gate": evals["gate"].to_dict(),
    }


StageReporter = Callable[[str], None]


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    settings: DemoSettings | None = None,
    quiet: bool = False,
    plot: bool = True,
    report: StageReporter | None = None,
    group: Collective = LOCAL,
) -> dict[str, Any]:
    """Run the demo into ``out_dir`` (see the module docstring); return the summary written to
    ``summary.json``. ``report(line)`` receives a short line per step (the CLI prints them).
    ``group`` (under torchrun, :mod:`townlet.distributed`): every rank captures the same
    demonstrations and its own rollouts and trains data-parallel; rank 0 alone evaluates and
    writes, the other ranks return ``{}`` after the anneal.

    Raises ``TorchNotAvailableError`` without torch, and, with ``plot``, ``ImportError`` (with
    the install hint) when matplotlib is missing — checked before any work.
    """
    from townlet.policy.rollout import capture_rollout, save_rollout
    from townlet.policy.rollout_torch import make_network_policy
    from townlet.policy.training.demo_plot import require_matplotlib, write_plot
    from townlet.policy.training.strategies.anneal.data import RolloutPlan
    from townlet.policy.training.strategies.anneal.run import run_anneal_with_state
    from townlet.policy.training.strategies.anneal.state import AnnealState

    if plot:
        require_matplotlib()
    settings = DemoSettings() if settings is None else settings
    say = report or (lambda line: None)
    out, started = Path(out_dir), time.perf_counter()
    config = demo_config(settings, seed)
    demos = capture_rollout(config.world, "scripted", settings.demo_ticks, seed)
    if group.is_root:
        save_rollout(demos, out / "demos")
    say(f"captured {demos.frames} expert frames ({settings.agents} agents)")
    bc_params: dict[str, Any] = {}

    def on_stage(state: AnnealState, result: Any) -> None:
        if result.mode == "bc" and state.params is not None:
            bc_params.update(params=state.params, spec=state.spec)
        say(_stage_line(state, result))

    run = run_anneal_with_state(
        config,
        bc_data=list(demos.samples),
        rollout=RolloutPlan(world=config.world, ticks=settings.rollout_ticks),
        out_dir=out,
        on_stage=on_stage,
        quiet=quiet,
        group=group,
    )
    if not group.is_root:
        return {}
    if run.state.stopped or run.state.params is None:
        raise TrainingFailedError(
            f"the BC stage failed its gate (accuracy {run.summary.stages[0].accuracy:.3f} < "
            f"{config.training.anneal_accuracy_threshold}); see {out / 'anneal_results.json'}"
        )
    if not bc_params:  # resumed after BC: the BC weights are its checkpoint
        bc_params.update(_bc_checkpoint(out))
    bc_policy = make_network_policy(bc_params["params"], bc_params["spec"])
    final_policy = make_network_policy(run.state.params, run.state.spec)  # type: ignore[arg-type]
    evals = _evaluations(bc_policy, final_policy, config.world, settings, seed)
    summary = {
        "seed": seed,
        "settings": attrs.asdict(settings),
        "wall_sec": None,
        "bc": _bc_block(run.state),
        "returns": _returns_block(evals),
        "anneal": {"status": run.summary.status, "stages": len(run.summary.stages)},
        "rollout_returns": list(run.state.rollout_returns),
        "promotion": _decide(run, evals["gate"], out),
    }
    if plot:
        write_plot(out, summary)
    summary["wall_sec"] = time.perf_counter() - started
    write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def _stage_line(state: Any, result: Any) -> str:
    if result.mode == "bc":
        verdict = "passed" if result.passed else "FAILED"
        return f"cycle {int(result.cycle)} bc: accuracy {result.accuracy:.3f} ({verdict})"
    flags = [n for n in ("loss", "queue", "intensity") if getattr(result, f"anneal_{n}_flag")]
    ret = state.rollout_returns[-1]
    return (
        f"cycle {int(result.cycle)} ppo: bc_weight {result.bc_weight:.2f}, rollout return "
        f"{ret:.1f}, loss {result.loss_total:.3f}" + (f", flags {flags}" if flags else "")
    )


def _bc_block(state: Any) -> dict[str, Any]:
    bc = next(r for r in state.results if r.mode == "bc")
    return {"accuracy": bc.accuracy, "threshold": bc.threshold, "passed": bc.passed}


def _bc_checkpoint(out: Path) -> dict[str, Any]:
    from townlet.policy.nn.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(out / "checkpoints" / "stage_001.pt")
    return {"params": checkpoint.params, "spec": checkpoint.spec}
