"""The anneal run: BC → PPO stages with guardrails, folded by the orchestrator.

``run_anneal(config, …)`` sorts ``training.anneal_schedule`` by cycle, refuses before any stage
runs what would fail midway (an empty schedule, a BC stage without demonstrations, a PPO stage
without a dataset or rollout source), folds
:func:`~townlet.policy.training.strategies.anneal.step.anneal_stage_step` over the stages
(:func:`~townlet.policy.training.orchestrator.run_stages`), reduces the results to
PASS / HOLD / FAIL, records that evaluation in the promotion state, and returns an
:class:`~townlet.dto.policy.AnnealSummary` that :func:`~townlet.decide` reads directly.

With ``out_dir`` the run writes ``telemetry.jsonl`` (one telemetry-1.2 line per PPO epoch,
``anneal_*`` fields set), ``checkpoints/``, ``run_state.json`` (resume point),
``anneal_results.json`` (a JSON array, one object per stage, every key present),
``checkpoint.pt`` (the final network: the candidate), ``anneal_summary.json``
(``{status, promotion, results}``) and ``promotion.json`` (loaded first when present, so
consecutive runs build a PASS streak).
Imports without torch; running needs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs

from townlet._atomic import write_text_atomic
from townlet._summary import record_dict, short_repr
from townlet.config import AnnealStage, Config
from townlet.distributed import LOCAL, Collective
from townlet.dto.convert import to_dict
from townlet.dto.policy import AnnealStageResult, AnnealSummary
from townlet.errors import ConfigError
from townlet.policy.replay.dataset import ReplayDataset, ReplayDatasetConfig
from townlet.policy.training.orchestrator import StageCallback, TrainingContext, run_stages
from townlet.policy.training.services.promotion import (
    PromotionState,
    init_promotion_state,
    record_evaluation,
)
from townlet.policy.training.services.promotion_io import (
    load_promotion_state,
    policy_hash,
    promotion_state_to_dict,
    save_promotion_state,
)
from townlet.policy.training.strategies.anneal.data import (
    AnnealData,
    BCData,
    PPOData,
    RolloutPlan,
    check_schedule,
)
from townlet.policy.training.strategies.anneal.flags import anneal_status, baselines_to_dict
from townlet.policy.training.strategies.anneal.io import (
    load_anneal_state,
    read_run_state,
    save_network,
    stage_to_dict,
)
from townlet.policy.training.strategies.anneal.state import (
    AnnealState,
    init_anneal_state,
    sorted_schedule,
)
from townlet.policy.training.strategies.anneal.step import anneal_stage_step

PROMOTION_FILE = "promotion.json"
SUMMARY_FILE = "anneal_summary.json"
CHECKPOINT_FILE = "checkpoint.pt"

__all__ = [
    "AnnealRun",
    "AnnealStageResult",
    "AnnealSummary",
    "anneal_stage_step",
    "run_anneal",
    "run_anneal_with_state",
]


@attrs.frozen(kw_only=True, eq=False)
class AnnealRun:
    """An anneal run: the ``summary``, the final ``state`` (parameters included) and the
    ``promotion`` state after recording this run's evaluation."""

    __repr__ = short_repr
    to_dict = record_dict

    summary: AnnealSummary
    state: AnnealState
    promotion: PromotionState


def _anneal_data(
    config: Config,
    bc_data: BCData | None,
    ppo_data: PPOData | None,
    rollout: RolloutPlan | None,
) -> AnnealData:
    if ppo_data is None and rollout is None and config.training.replay_manifest is not None:
        manifest = config.training.replay_manifest
        ppo_data = ReplayDataset(ReplayDatasetConfig.from_manifest(manifest))
    return AnnealData(bc=bc_data, ppo=ppo_data, rollout=rollout)


def _promotion(config: Config, out: Path | None, given: PromotionState | None) -> PromotionState:
    if given is not None:
        return given
    if out is not None and (out / PROMOTION_FILE).exists():
        return load_promotion_state(out / PROMOTION_FILE)
    return init_promotion_state(required_passes=config.promotion.required_passes)


def _candidate(state: AnnealState, out: Path | None) -> dict[str, str]:
    """The candidate's identity: its policy hash and, with a run directory, the saved
    checkpoint (written here: the one file this needs)."""
    candidate: dict[str, str] = {}
    if state.params is not None:
        candidate["policy_hash"] = policy_hash(state.params)
        if out is not None:
            candidate["checkpoint"] = str(save_network(out / CHECKPOINT_FILE, state).resolve())
    return candidate


def record_run(
    config: Config,
    promotion: PromotionState,
    results: tuple[AnnealStageResult, ...],
    candidate: dict[str, str],
) -> tuple[str, PromotionState]:
    """The run's PASS/HOLD/FAIL status and the promotion state after recording it (pure)."""
    status = anneal_status(results)
    recorded = record_evaluation(
        promotion,
        status,
        results,
        required_passes=config.promotion.required_passes,
        candidate=candidate,
    )
    return status, recorded


def run_anneal_with_state(
    config: Config,
    *,
    bc_data: BCData | None = None,
    ppo_data: PPOData | None = None,
    rollout: RolloutPlan | None = None,
    seed: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    init: AnnealState | None = None,
    promotion: PromotionState | None = None,
    on_stage: StageCallback | None = None,
    quiet: bool = False,
    group: Collective = LOCAL,
) -> AnnealRun:
    """:func:`run_anneal`, returning the final :class:`AnnealState` and promotion state too.

    ``init`` starts from a given state (e.g. a BC run's parameters via ``init_anneal_state``);
    ``promotion`` replaces the one read from ``out_dir``. ``group`` (under torchrun,
    :mod:`townlet.distributed`): the ranks share the BC and replay data and each captures its
    own rollouts; every rank resumes from ``out_dir``, rank 0 alone writes there.
    """
    schedule = sorted_schedule(config.training.anneal_schedule)
    data = attrs.evolve(_anneal_data(config, bc_data, ppo_data, rollout), group=group)
    check_schedule(schedule, data, config)
    out = None if out_dir is None else Path(out_dir)
    start = init if init is not None else init_anneal_state(config.seed if seed is None else seed)
    if group.world_size > 1:
        start, out, quiet = _rank_start(group, out, schedule, start, quiet)
    ctx = TrainingContext(config=config, data=data, state=start, run_dir=out)
    state = run_stages(ctx, schedule, on_stage=on_stage, quiet=quiet, desc="anneal").state
    status, promo = record_run(
        config, _promotion(config, out, promotion), state.results, _candidate(state, out)
    )
    if out is not None:
        save_promotion_state(out / PROMOTION_FILE, promo)
    summary = AnnealSummary(
        duration_sec=sum(result.duration_sec or 0.0 for result in state.results),
        stages=state.results,
        status=status,
        dataset_label=data.label,
        baselines={data.label: baselines_to_dict(state.baselines)},
        promotion_pass_streak=promo.pass_streak,
        promotion_candidate_ready=promo.candidate_ready,
    )
    if out is not None:
        write_text_atomic(out / SUMMARY_FILE, json.dumps(anneal_payload(summary, promo), indent=2))
    return AnnealRun(summary=summary, state=state, promotion=promo)


def _rank_start(
    group: Collective,
    out: Path | None,
    schedule: tuple[AnnealStage, ...],
    start: AnnealState,
    quiet: bool,
) -> tuple[AnnealState, Path | None, bool]:
    """Where this rank starts, its run directory and quietness: rank 0 resumes from ``out`` and
    writes there; a rank > 0 reads the same checkpoint (before anyone writes: a barrier follows),
    writes nothing and shows no progress."""
    from townlet.distributed.group import barrier

    if not group.is_root:
        data = None if out is None else read_run_state(out)
        if data is not None:
            if data.get("stages") != [stage_to_dict(stage) for stage in schedule]:
                raise ConfigError(
                    f"{out}: the run directory holds a run with another schedule; "
                    "use a new --out directory"
                )
            assert out is not None
            start = load_anneal_state(out, data)
        out, quiet = None, True
    barrier(group)
    return start, out, quiet


def anneal_payload(summary: AnnealSummary, promotion: PromotionState) -> dict[str, Any]:
    """``{status, promotion, results}``: what ``townlet-train anneal`` prints and writes to
    ``anneal_summary.json`` — the input ``decide`` and ``promote evaluate`` read."""
    return {
        "status": summary.status,
        "promotion": promotion_state_to_dict(promotion),
        "results": [to_dict(stage) for stage in summary.stages],
    }


def run_anneal(
    config: Config,
    *,
    bc_data: BCData | None = None,
    ppo_data: PPOData | None = None,
    rollout: RolloutPlan | None = None,
    seed: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    on_stage: StageCallback | None = None,
    quiet: bool = False,
) -> AnnealSummary:
    """Run ``config.training.anneal_schedule`` and return its :class:`AnnealSummary`.

    ``bc_data``: demonstrations for BC stages (a BC manifest path or samples; default
    ``training.bc.manifest``). PPO stages train on ``ppo_data`` (a replay dataset), else on
    fresh rollouts of ``rollout`` captured each stage with the current parameters, else on
    ``training.replay_manifest``. ``seed`` defaults to ``config.seed``. ``out_dir``: see the
    module docstring (an ``out_dir`` holding a checkpoint of the same schedule resumes).
    ``on_stage(state, result)`` is called after every stage.

    Raises:
        ConfigError: an empty schedule, or a BC/PPO stage without its data (before any stage
            runs); a run directory of another schedule.
        TorchNotAvailableError: torch is missing.
    """
    run = run_anneal_with_state(
        config,
        bc_data=bc_data,
        ppo_data=ppo_data,
        rollout=rollout,
        seed=seed,
        out_dir=out_dir,
        on_stage=on_stage,
        quiet=quiet,
    )
    return run.summary
