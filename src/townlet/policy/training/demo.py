"""The main job, end to end on the embedded town: ``run_demo(out_dir, seed=0)``.

1. Capture scripted demonstrations of the town (the expert) into ``out_dir/demos``.
2. Behaviour-clone them to the validation plateau (:func:`~townlet.policy.training.bc_plateau.
   train_bc_to_plateau`; ``bc_checkpoint.pt``), gated on held-out accuracy. This plateau BC is
   both where PPO starts and the baseline it must beat: a BC stopped early is an easy target.
3. Measure the guardrails' reference: the BC policy's own fresh rollout (its queue-conflict
   counters become the pinned social baselines, :func:`~townlet.policy.training.strategies.
   anneal_flags.reference_baselines`).
4. Anneal from the BC weights: PPO stages on fresh rollouts captured each cycle with the current
   weights, ``bc_weight`` falling from ``bc_weight_start`` to ``bc_weight_end``, the first after
   a critic warm-up (``telemetry.jsonl``, ``checkpoints/``, ``anneal_results.json``).
5. Evaluate random, plateau BC, final and the scripted expert on the same held-out episodes
   (seed + ``eval_seed_offset``, 1000 by default, never a training seed; sampled actions as
   in training unless ``eval_greedy``)
   with 95% confidence intervals, and the paired differences final − BC and final − scripted
   (:mod:`townlet.policy.training.demo_stats`).
6. Decide promotion: the anneal evaluation (guardrails), the paired-return behaviour gate of
   the final policy against the BC policy, and, when both pass, ``promote`` — all in
   ``promotion.json``.
7. Write ``summary.json`` and ``training.png``.

:func:`run_demo_seeds` runs it for several run seeds in parallel processes and writes the
comparison across seeds (:mod:`townlet.policy.training.demo_seeds`). This module imports without
torch; running needs it.
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
BC_CHECKPOINT_FILE = "bc_checkpoint.pt"
EVAL_SEED_OFFSET = 1000  # evaluation episodes never share seeds with training rollouts
_REFERENCE_STREAM = 13  # the BC reference rollout's seed: SeedSequence([seed, _REFERENCE_STREAM])
POLICIES = ("random", "bc", "final", "scripted")


@attrs.frozen(kw_only=True)
class DemoSettings:
    """The demo's sizes and its tuned PPO settings.

    ``agents`` in the town, ``demo_ticks`` of expert demonstrations; BC runs at most
    ``bc_epochs`` epochs and stops at its validation plateau (no held-out improvement for
    ``bc_patience`` epochs); ``cycles`` PPO stages of ``ppo_epochs`` epochs on ``rollout_ticks``
    fresh ticks each, ``bc_weight`` falling linearly from ``bc_weight_start`` to
    ``bc_weight_end`` — on the expert's demonstrations beside every PPO minibatch with
    ``demo_bc`` (``training.anneal_bc_target = "demos"``), else on the rollout's own actions —
    PPO ``learning_rate``/``gamma``/``entropy_coef``, ``critic_warmup_epochs``
    value-only epochs first; ``eval_episodes`` held-out episodes of ``eval_ticks`` ticks per
    policy; ``bc_threshold`` the BC gate (held-out accuracy); ``loss_tolerance``/
    ``queue_tolerance`` the guardrails (see docs/anneal.md for how they were calibrated);
    ``eval_greedy`` whether evaluated policies take their most likely action (default: they
    sample, as in training); ``eval_seed_offset``: the held-out episodes are drawn from
    ``seed + eval_seed_offset`` (the reported demo uses 1000; ``tools/tune_demo.py`` tunes on
    another offset so that the reported episodes never steer the settings)."""

    agents: int = 8
    demo_ticks: int = 300
    bc_epochs: int = 60
    bc_patience: int = 5
    cycles: int = 12
    ppo_epochs: int = 2
    rollout_ticks: int = 1000
    bc_weight_start: float = 0.5
    bc_weight_end: float = 0.2
    learning_rate: float = 2e-4
    gamma: float = 0.95
    entropy_coef: float = 0.0
    critic_warmup_epochs: int = 3
    eval_episodes: int = 12
    eval_ticks: int = 500
    bc_threshold: float = 0.7
    loss_tolerance: float = 1.0
    queue_tolerance: float = 0.65
    eval_greedy: bool = False
    demo_bc: bool = True
    eval_seed_offset: int = attrs.field(default=EVAL_SEED_OFFSET, validator=attrs.validators.ge(1))


QUICK = DemoSettings(cycles=4, rollout_ticks=500, eval_episodes=8)


def demo_world(settings: DemoSettings) -> WorldConfig:
    """The town of the demo: the default town with ``settings.agents`` agents."""
    return WorldConfig(num_agents=settings.agents)


def demo_schedule(settings: DemoSettings) -> tuple[AnnealStage, ...]:
    """``cycles`` PPO stages (cycles 1…n) with ``bc_weight`` falling linearly from
    ``bc_weight_start`` to ``bc_weight_end``; BC (cycle 0) runs before, to its plateau."""
    weights = np.linspace(settings.bc_weight_start, settings.bc_weight_end, settings.cycles)
    return tuple(
        AnnealStage(cycle=i + 1, mode="ppo", epochs=settings.ppo_epochs, bc_weight=float(w))
        for i, w in enumerate(weights)
    )


def demo_config(settings: DemoSettings, seed: int) -> Config:
    """The demo's config. The value clip is off and ``gamma`` is 0.95 so that the untrained
    critic can catch up with returns of tens of reward units; the guardrail tolerances are the
    demo's calibrated ones; one PASS makes a candidate ready (the behaviour gate is the second
    check)."""
    return Config(
        seed=seed,
        ppo=PPOConfig(
            learning_rate=settings.learning_rate,
            gamma=settings.gamma,
            value_clip=0.0,
            entropy_coef=settings.entropy_coef,
        ),
        training=TrainingConfig(
            source="anneal",
            rollout_ticks=settings.rollout_ticks,
            bc=BCConfig(epochs=settings.bc_epochs),
            anneal_schedule=demo_schedule(settings),  # type: ignore[arg-type]  # converter=tuple
            anneal_accuracy_threshold=settings.bc_threshold,
            anneal_loss_tolerance=settings.loss_tolerance,
            anneal_queue_tolerance=settings.queue_tolerance,
            critic_warmup_epochs=settings.critic_warmup_epochs,
            anneal_bc_target="demos" if settings.demo_bc else "rollout",
        ),
        promotion=PromotionConfig(required_passes=1),
        world=demo_world(settings),
    )


StageReporter = Callable[[str], None]


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    settings: DemoSettings | None = None,
    quiet: bool = False,
    plot: bool = True,
    report: StageReporter | None = None,
    overwrite: bool = False,
    group: Collective = LOCAL,
) -> dict[str, Any]:
    """Run the demo into ``out_dir`` (see the module docstring); return the summary written to
    ``summary.json``. ``report(line)`` receives a short line per step (the CLI prints them).
    An ``out_dir`` holding the same run resumes it; one holding another run (other settings or
    seed) raises ``RunMismatchError`` unless ``overwrite``. ``group`` (under torchrun,
    :mod:`townlet.distributed`): every rank captures the same demonstrations, clones them the
    same way and captures its own rollouts for the data-parallel anneal; rank 0 alone evaluates
    and writes, the other ranks return ``{}`` after the anneal.

    Raises ``TorchNotAvailableError`` without torch, ``TrainingFailedError`` when BC fails its
    gate, and, with ``plot``, ``ImportError`` (with the install hint) when matplotlib is
    missing — checked before any work.
    """
    from townlet.policy.training.demo_plot import require_matplotlib, write_plot

    if plot:
        require_matplotlib()
    settings = DemoSettings() if settings is None else settings
    say = report or (lambda line: None)
    out, started = Path(out_dir), time.perf_counter()
    config = demo_config(settings, seed)
    bc, demos = _clone(out, config, settings, seed, overwrite, write=group.is_root)
    say(
        f"captured {demos.frames} expert frames ({settings.agents} agents); BC plateau at epoch "
        f"{bc.best_epoch} of {bc.epochs}: held-out accuracy {bc.val_accuracy:.3f}"
    )
    if bc.val_accuracy < settings.bc_threshold:
        raise TrainingFailedError(
            f"BC failed its gate (held-out accuracy {bc.val_accuracy:.3f} < "
            f"{settings.bc_threshold}); see {out / BC_CHECKPOINT_FILE}"
        )
    run = _anneal(
        out, config, settings, (bc, demos), seed, say, quiet=quiet, overwrite=overwrite, group=group
    )
    if not group.is_root:
        return {}
    evals = _evaluations(bc, run.state, config.world, settings, seed)
    summary = {
        "seed": seed,
        "settings": attrs.asdict(settings),
        "wall_sec": None,
        "bc": {
            **bc.to_dict(),
            "accuracy": bc.val_accuracy,
            "threshold": settings.bc_threshold,
            "passed": True,
        },
        "guardrails": _guardrails(run, settings),
        "returns": evals,
        "anneal": {"status": run.summary.status, "stages": len(run.summary.stages)},
        "rollout_returns": list(run.state.rollout_returns),
        "promotion": _decide(run, evals["behaviour_gate"], out),
    }
    if plot:
        write_plot(out, summary)
    summary["wall_sec"] = time.perf_counter() - started
    write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def _clone(
    out: Path, config: Config, settings: DemoSettings, seed: int, overwrite: bool, *, write: bool
) -> tuple[Any, Any]:
    """Capture the expert, clone it to the plateau, save both; the BC run and the
    demonstrations."""
    from townlet.policy.nn.checkpoint import save_checkpoint
    from townlet.policy.rollout import capture_rollout, save_rollout
    from townlet.policy.training.bc_plateau import train_bc_to_plateau

    demos = capture_rollout(config.world, "scripted", settings.demo_ticks, seed)
    bc = train_bc_to_plateau(
        list(demos.samples),
        cfg=config.training.bc,
        seed=seed,
        max_epochs=settings.bc_epochs,
        patience=settings.bc_patience,
    )
    if write and (overwrite or not (out / "run_state.json").exists()):
        save_rollout(demos, out / "demos")
        extra = {"kind": "bc_plateau", **bc.to_dict()}
        save_checkpoint(out / BC_CHECKPOINT_FILE, spec=bc.spec, params=bc.params, extra=extra)
    return bc, demos


def _anneal(
    out: Path,
    config: Config,
    settings: DemoSettings,
    teacher: tuple[Any, Any],
    seed: int,
    say: StageReporter,
    *,
    quiet: bool,
    overwrite: bool,
    group: Collective,
) -> Any:
    from townlet.policy.rollout import capture_rollout
    from townlet.policy.rollout_torch import make_network_policy
    from townlet.policy.training.strategies.anneal.data import RolloutPlan
    from townlet.policy.training.strategies.anneal.flags import reference_baselines
    from townlet.policy.training.strategies.anneal.run import run_anneal_with_state
    from townlet.policy.training.strategies.anneal.state import AnnealState

    bc, demos = teacher  # the plateau BC run and the expert demonstrations it cloned
    reference_seed = int(np.random.SeedSequence([seed, _REFERENCE_STREAM]).generate_state(1)[0])
    reference = capture_rollout(
        config.world, make_network_policy(bc.params, bc.spec), settings.rollout_ticks,
        reference_seed >> 1,
    )  # fmt: skip
    events = reference.event_counts
    baselines = reference_baselines(
        float(events.queue_conflict_events), float(events.queue_conflict_intensity_sum)
    )
    say(
        f"guardrail reference (BC's own {settings.rollout_ticks}-tick rollout): "
        f"{events.queue_conflict_events} queue conflicts, intensity "
        f"{events.queue_conflict_intensity_sum:.1f}"
    )
    init = AnnealState(
        seed=seed, params=bc.params, spec=bc.spec, warmup_pending=True, baselines=baselines
    )
    return run_anneal_with_state(
        config,
        bc_data=list(demos.samples) if settings.demo_bc else None,
        rollout=RolloutPlan(world=config.world, ticks=settings.rollout_ticks),
        out_dir=out,
        init=init,
        on_stage=lambda state, result: say(_stage_line(state, result)),
        quiet=quiet,
        overwrite=overwrite,
        group=group,
    )


def _evaluations(
    bc: Any, state: Any, world: WorldConfig, settings: DemoSettings, seed: int
) -> dict[str, Any]:
    from townlet.policy.evaluate import evaluate_policy
    from townlet.policy.rollout_torch import make_network_policy
    from townlet.policy.training.demo_stats import returns_block

    env = attrs.evolve(world, episode_length=settings.eval_ticks)
    policies: dict[str, object] = {
        "random": "random",
        "bc": make_network_policy(bc.params, bc.spec),
        "final": make_network_policy(state.params, state.spec),
        "scripted": "scripted",
    }
    runs = {
        name: evaluate_policy(
            policy,
            env,
            episodes=settings.eval_episodes,
            seed=seed + settings.eval_seed_offset,
            deterministic=settings.eval_greedy,
        )
        for name, policy in policies.items()
    }
    return returns_block(runs)


def _guardrails(run: Any, settings: DemoSettings) -> dict[str, Any]:
    from townlet.policy.training.strategies.anneal.flags import baselines_to_dict

    return {
        "loss_tolerance": settings.loss_tolerance,
        "queue_tolerance": settings.queue_tolerance,
        "baselines": baselines_to_dict(run.state.baselines),
        "status": run.summary.status,
    }


def _decide(run: Any, gate: dict[str, Any], out: Path) -> dict[str, Any]:
    from townlet.policy.training.services.behaviour_gate import BehaviourGateResult
    from townlet.policy.training.services.promotion import promote, record_behaviour_gate
    from townlet.policy.training.services.promotion_decision import decide
    from townlet.policy.training.services.promotion_io import save_promotion_state

    decision = decide(run.summary.to_dict())
    promotion = record_behaviour_gate(run.promotion, BehaviourGateResult(**gate))
    verdict = decision.decision if gate["passed"] else "HOLD"
    reasons = [*decision.reasons, *([] if gate["passed"] else ["behaviour_gate_failed"])]
    if _already_released(promotion, run.state.params):  # a rerun of a promoted demo
        verdict, reasons = "PROMOTE", ["already_promoted"]
    elif verdict == "PROMOTE":
        promotion = promote(promotion, require_behaviour_gate=True)
    save_promotion_state(out / "promotion.json", promotion)
    return {
        "decision": verdict,
        "status": decision.status,
        "reasons": reasons,
        "state": promotion.state,
        "release": dict(promotion.current_release),
    }


def _already_released(promotion: Any, params: Any) -> bool:
    from townlet.policy.training.services.promotion_io import policy_hash

    release = promotion.current_release
    return bool(promotion.state == "promoted" and release.get("policy_hash") == policy_hash(params))


def _stage_line(state: Any, result: Any) -> str:
    flags = [n for n in ("loss", "queue", "intensity") if getattr(result, f"anneal_{n}_flag")]
    ret = state.rollout_returns[-1]
    return (
        f"cycle {int(result.cycle)} ppo: bc_weight {result.bc_weight:.2f}, rollout return "
        f"{ret:.1f}, loss {result.loss_total:.3f}" + (f", flags {flags}" if flags else "")
    )
