"""One anneal stage as a pure step: ``anneal_stage_step(state, stage, data, config)``.

A BC stage clones the demonstrations starting from the current parameters and gates on the
accuracy threshold (validation accuracy when there is a held-out split, ``>=``); a failed gate
keeps the parameters from before the stage (``rolled_back``) and stops the schedule. A PPO stage
continues from the current parameters (DESIGN §5.1) with ``bc_coef = stage.bc_weight`` (§5.2)
on the cross-entropy against the stage data's own actions, or, with
``training.anneal_bc_target = "demos"``, against the expert's actions on BC demonstration rows
beside every PPO minibatch; the anneal context of the previous PPO stage's baselines; and —
right after a BC stage — ``critic_warmup_epochs`` extra value-only epochs first. Its data is a
replay dataset or a fresh rollout captured with the current parameters (a fresh network, seeded
by the run seed, when a run starts with PPO) in the cycle's social reward stage. The baselines
for the next PPO stage come from this stage's final epoch, social counters included (§5.4).

Randomness: every stage derives its seeds from the run seed and the stage index, so a run
resumed from a checkpoint after stage k continues exactly as the uninterrupted run. This module
imports without torch; running a stage needs it (``TorchNotAvailableError``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from townlet.config import AnnealStage, Config
from townlet.dto.policy import AnnealStageResult
from townlet.errors import ConfigError, ReplayDataError
from townlet.policy.streams import Stream
from townlet.policy.training.strategies.anneal.flags import update_baselines

if TYPE_CHECKING:
    from townlet.distributed.parallel import DataParallel
    from townlet.policy.training.strategies.anneal.data import PPOInputs
    from townlet.policy.training.strategies.ppo.functional import DemoRows


from townlet.policy.training.strategies.anneal.data import (
    AnnealData,
    AnnealInputs,
    load_anneal_data,
    stage_inputs,
    with_network,
)
from townlet.policy.training.strategies.anneal.state import (
    AnnealState,
    StageOutput,
    anneal_context,
    ppo_stage_result,
    stage_seed,
)


def _no_clock() -> float:
    return 0.0


def anneal_stage_step(
    state: AnnealState,
    stage: AnnealStage,
    data: AnnealInputs | AnnealData,
    config: Config,
    *,
    clock: Callable[[], float] = _no_clock,
) -> tuple[AnnealState, StageOutput]:
    """Run one anneal stage from ``state``; return the next state and the stage's output.

    See the module docstring for what a BC and a PPO stage do. ``state`` is not modified.
    ``data`` is :func:`load_anneal_data` output (an :class:`AnnealData` is loaded here, on every
    call). The step reads no file and no clock: ``clock`` (0 by default) only times the
    ``duration_sec`` fields, and the orchestrator passes the run clock. Raises ``ConfigError``
    when the stage lacks its data, ``TorchNotAvailableError`` without torch, and
    ``ReplayDataError``/``NonFiniteTrainingError`` for bad data.
    """
    if isinstance(data, AnnealData):
        data = load_anneal_data(data, config, stages=(stage,))
    if stage.mode == "bc":
        return _bc_stage(state, stage, data, config, clock)
    return _ppo_stage(state, stage, data, config, clock)


def _bc_stage(
    state: AnnealState,
    stage: AnnealStage,
    data: AnnealInputs,
    config: Config,
    clock: Callable[[], float],
) -> tuple[AnnealState, StageOutput]:
    from townlet.policy.training.strategies.bc.epoch import fit_bc

    if data.bc is None:
        raise ConfigError(f"BC stage at cycle {stage.cycle} has no demonstrations")
    run = fit_bc(
        data.bc,
        config.training.bc,
        seed=stage_seed(state.seed, state.stage_index, Stream.STAGE_BC),
        init=state.params,
        spec=state.spec,
        clock=clock,
        group=data.group,
    )
    gate = run.result.val_accuracy
    accuracy = run.result.accuracy if gate is None else gate
    threshold = config.training.anneal_accuracy_threshold
    passed = accuracy >= threshold
    result = AnnealStageResult(
        duration_sec=run.result.duration_sec,
        cycle=float(stage.cycle),
        mode="bc",
        accuracy=min(1.0, max(0.0, accuracy)),
        loss=run.result.val_loss if gate is not None else run.result.loss,
        threshold=threshold,
        passed=passed,
        bc_weight=stage.bc_weight,
        rolled_back=not passed,
    )
    common: dict[str, Any] = {
        "stage_index": state.stage_index + 1,
        "results": (*state.results, result),
        "last_bc": result,
        "rollout_returns": (*state.rollout_returns, None),
    }
    output = StageOutput(result=result, bc=run.result)
    if not passed:  # keep the parameters from before the stage
        return attrs.evolve(state, stopped=True, **common), output
    new = attrs.evolve(
        state, params=run.params, spec=run.spec, ppo_state=None, warmup_pending=True, **common
    )
    return new, output


def _ppo_stage(
    state: AnnealState,
    stage: AnnealStage,
    data: AnnealInputs,
    config: Config,
    clock: Callable[[], float],
) -> tuple[AnnealState, StageOutput]:
    from townlet.policy.training.strategies.ppo.replay import fit_ppo, prepare_batches
    from townlet.policy.training.strategies.ppo.start import start_state

    training = config.training
    state = with_network(state, data)
    inputs, rollout_return = stage_inputs(state, stage, data, config)
    label = inputs.info.label
    if inputs.shape is None:
        raise ReplayDataError(f"Replay dataset yielded no batches (dataset={label})")
    carried = state.ppo_state is not None
    start = start_state(
        inputs.shape,
        label=label,
        seed=state.seed,
        state=state.ppo_state,
        init=None if carried else state.params,
        spec=None if carried else state.spec,
    )
    cfg = attrs.evolve(config.ppo, bc_coef=stage.bc_weight)
    device = next(iter(start.params.values())).device
    warmup = training.critic_warmup_epochs if state.warmup_pending else 0
    run = fit_ppo(
        start,
        prepare_batches(inputs.batches, cfg, label=label, device=device),
        inputs.info,
        cfg,
        epochs=stage.epochs + warmup,
        value_only_epochs=warmup,
        anneal_context=anneal_context(state, stage, data.label, training),
        clock=clock,
        parallel=_parallel(data, inputs),
        demos=_demo_rows(stage, data, training.anneal_bc_target, device),
    )
    result = ppo_stage_result(stage, run.result)
    new = attrs.evolve(
        state,
        params=run.state.params,
        spec=run.state.spec,
        ppo_state=run.state,
        baselines=update_baselines(state.baselines, run.result),
        warmup_pending=False,
        stage_index=state.stage_index + 1,
        results=(*state.results, result),
        rollout_returns=(*state.rollout_returns, rollout_return),
    )
    return new, StageOutput(result=result, epochs=run.results)


def _demo_rows(stage: AnnealStage, data: AnnealInputs, target: str, device: Any) -> DemoRows | None:
    """The expert rows of the stage's BC term (None: it clones the stage data's own actions,
    or has no weight)."""
    if target != "demos" or stage.bc_weight <= 0.0:
        return None
    if data.bc is None:
        raise ConfigError(
            f"PPO stage at cycle {stage.cycle} has no demonstrations for "
            'training.anneal_bc_target = "demos"'
        )
    frames = data.bc.frames
    maps = None if frames.maps is None else frames.maps.to(device)
    return (maps, frames.features.to(device), frames.actions.to(device))


def _parallel(data: AnnealInputs, inputs: PPOInputs) -> DataParallel:
    """Replay data is shared by the ranks; rollouts are each rank's own (equal sizes)."""
    from townlet.distributed.parallel import check_equal_rows, make_data_parallel

    parallel = make_data_parallel(data.group, shared_data=data.ppo is not None)
    rows = sum(batch.batch_size * batch.timesteps for batch in inputs.batches)
    check_equal_rows(parallel, rows, what=inputs.info.label)
    return parallel
