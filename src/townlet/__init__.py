"""townlet — policy training for a small-town life simulation.

Behaviour cloning from demonstrations, PPO on replay data and on fresh rollouts, an anneal
schedule from BC to PPO with guardrails, and a promotion gate for candidate policies, built
as pure step functions over immutable ``attrs`` records.

Importing ``townlet`` never imports torch: the public names below are resolved lazily, and
only the ones that compute with torch need it; without torch those raise
:class:`~townlet.errors.TorchNotAvailableError` (an ``ImportError``) with the install hint.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it. Resolved on first attribute access so that
# ``import townlet`` stays cheap and torch-free.
_EXPORTS: dict[str, str] = {
    "TownletError": "townlet.errors",
    "TownletInputError": "townlet.errors",
    "ConfigError": "townlet.errors",
    "DTOValidationError": "townlet.errors",
    "ReplayDataError": "townlet.errors",
    "TelemetryError": "townlet.errors",
    "CheckpointError": "townlet.errors",
    "TorchNotAvailableError": "townlet.errors",
    "TrainingFailedError": "townlet.errors",
    "CaptureWriteError": "townlet.errors",
    # foundation: config, converter, result records, telemetry
    "AnnealStage": "townlet.config",
    "AnnealStageResult": "townlet.dto.policy",
    "AnnealSummary": "townlet.dto.policy",
    "BCConfig": "townlet.config",
    "BCTrainingResult": "townlet.dto.policy",
    "Config": "townlet.config",
    "PPOConfig": "townlet.config",
    "PPOTrainingResult": "townlet.dto.policy",
    "PromotionConfig": "townlet.config",
    "PromotionEvaluation": "townlet.dto.policy",
    "SocialRewardScheduleEntry": "townlet.config",
    "TelemetryValidation": "townlet.dto.telemetry_validate",
    "TrainingConfig": "townlet.config",
    "TrainingResultBase": "townlet.dto.policy",
    "config_from_dict": "townlet.config",
    "convert_telemetry": "townlet.dto.telemetry",
    "from_dict": "townlet.dto.convert",
    "load_config": "townlet.config",
    "read_telemetry": "townlet.dto.telemetry",
    "to_dict": "townlet.dto.convert",
    "validate_telemetry": "townlet.dto.telemetry_validate",
    "write_telemetry": "townlet.dto.telemetry",
    # replay data (townlet.policy.replay)
    "InMemoryReplayDataset": "townlet.policy.replay",
    "ManifestEntry": "townlet.policy.replay",
    "ReplayBatch": "townlet.policy.replay",
    "ReplayDataset": "townlet.policy.replay",
    "ReplayDatasetConfig": "townlet.policy.replay",
    "ReplayEventCounts": "townlet.policy.replay",
    "ReplaySample": "townlet.policy.replay",
    "aggregate_metrics": "townlet.policy.replay",
    "build_batch": "townlet.policy.replay",
    "compute_sample_metrics": "townlet.policy.replay",
    "flatten_bc_frames": "townlet.policy.replay",
    "load_bc_samples": "townlet.policy.replay",
    "load_replay_sample": "townlet.policy.replay",
    "read_manifest": "townlet.policy.replay",
    "record_events": "townlet.policy.replay",
    "save_replay_sample": "townlet.policy.replay",
    # nn core: network as data, pure Adam, checkpoints (NetworkSpec is torch-free)
    "AdamConfig": "townlet.policy.nn.adam",
    "Checkpoint": "townlet.policy.nn.checkpoint",
    "NetworkSpec": "townlet.policy.nn.spec",
    "init_params": "townlet.policy.nn.network",
    "load_checkpoint": "townlet.policy.nn.checkpoint",
    "save_checkpoint": "townlet.policy.nn.checkpoint",
    # world: the embedded town (numpy only; make_town_env needs the pettingzoo extra)
    "WorldConfig": "townlet.world.config",
    "make_town_env": "townlet.envs.pettingzoo_town",
    "observe_world": "townlet.world.observe",
    "reset_world": "townlet.world.state",
    "scripted_actions": "townlet.world.scripted",
    "step_world": "townlet.world.simulate",
    # promotion: anneal guardrails, promotion state machine, behaviour gate, decision
    "AnnealBaselines": "townlet.policy.training.strategies.anneal.flags",
    "AnnealFlags": "townlet.policy.training.strategies.anneal.flags",
    "BehaviourGateResult": "townlet.policy.training.services.behaviour_gate",
    "PromotionDecision": "townlet.policy.training.services.promotion_decision",
    "PromotionError": "townlet.errors",
    "PromotionEvent": "townlet.policy.training.services.promotion",
    "PromotionState": "townlet.policy.training.services.promotion",
    "anneal_status": "townlet.policy.training.strategies.anneal.flags",
    "decide": "townlet.policy.training.services.promotion_decision",
    "evaluate_flags": "townlet.policy.training.strategies.anneal.flags",
    "file_sha256": "townlet.policy.training.services.promotion_io",
    "init_promotion_state": "townlet.policy.training.services.promotion",
    "load_promotion_state": "townlet.policy.training.services.promotion_io",
    "paired_return_gate": "townlet.policy.training.services.behaviour_gate",
    "policy_hash": "townlet.policy.training.services.promotion_io",
    "promote": "townlet.policy.training.services.promotion",
    "record_behaviour_gate": "townlet.policy.training.services.promotion",
    "record_evaluation": "townlet.policy.training.services.promotion",
    "rollback": "townlet.policy.training.services.promotion",
    "save_promotion_state": "townlet.policy.training.services.promotion_io",
    "student_t_quantile": "townlet.policy.training.services.behaviour_gate",
    "swap": "townlet.policy.training.services.promotion",
    "update_baselines": "townlet.policy.training.strategies.anneal.flags",
    # PPO and BC training runs (train_ppo/train_bc import torch only when called)
    "AnnealContext": "townlet.policy.training.strategies.ppo.summary",
    "BCRun": "townlet.policy.training.strategies.bc.train",
    "NonFiniteTrainingError": "townlet.errors",
    "OnlinePPOConfig": "townlet.policy.training.strategies.ppo.online",
    "PPODatasetInfo": "townlet.policy.training.strategies.ppo.summary",
    "TrainResult": "townlet.policy.training.strategies.ppo.train",
    "dataset_info": "townlet.policy.training.strategies.ppo.summary",
    "load_ppo_state": "townlet.policy.training.strategies.ppo.checkpoint",
    "ppo_epoch": "townlet.policy.training.strategies.ppo.replay",
    "prepare_batches": "townlet.policy.training.strategies.ppo.replay",
    "replay_epoch": "townlet.policy.training.strategies.ppo.replay",
    "EpochData": "townlet.policy.training.strategies.ppo.epoch",
    "run_fold": "townlet.policy.training.fold",
    "Stream": "townlet.policy.streams",
    "save_bc_checkpoint": "townlet.policy.training.strategies.bc.train",
    "save_ppo_state": "townlet.policy.training.strategies.ppo.checkpoint",
    "train_bc": "townlet.policy.training.strategies.bc.train",
    "train_ppo": "townlet.policy.training.strategies.ppo.train",
    # online PPO on Gymnasium environments (needs torch and the gym extra)
    "OnlineTrainResult": "townlet.policy.training.strategies.ppo.online",
    "train_ppo_online": "townlet.policy.training.strategies.ppo.online",
    # rollout capture (townlet.policy.rollout; NetworkPolicy/make_network_policy need torch,
    # make_gymnasium_source the gym extra)
    "GymnasiumSource": "townlet.envs.gymnasium_adapter",
    "NetworkPolicy": "townlet.policy.rollout_torch",
    "RandomPolicy": "townlet.policy.rollout",
    "RolloutBuffer": "townlet.policy.rollout",
    "RolloutError": "townlet.errors",
    "ScriptedPolicy": "townlet.policy.rollout",
    "build_rollout_dataset": "townlet.policy.rollout",
    "capture_rollout": "townlet.policy.rollout",
    "resolve_policy_argument": "townlet.policy.policy_argument",
    "rollout_summary": "townlet.policy.rollout",
    "save_rollout": "townlet.policy.rollout",
    "load_network_policy": "townlet.policy.rollout_torch",
    "make_gymnasium_source": "townlet.envs.gymnasium_adapter",
    "make_network_policy": "townlet.policy.rollout_torch",
    # evaluation: seeded episode returns in the town or a Gymnasium environment
    "PolicyEvaluation": "townlet.policy.evaluate",
    "evaluate_policy": "townlet.policy.evaluate",
    # anneal, orchestrator, demo (AnnealStageResult/AnnealSummary: see foundation above)
    "AnnealData": "townlet.policy.training.strategies.anneal.data",
    "AnnealRun": "townlet.policy.training.strategies.anneal.run",
    "AnnealState": "townlet.policy.training.strategies.anneal.state",
    "DemoSettings": "townlet.policy.training.demo",
    "RolloutPlan": "townlet.policy.training.strategies.anneal.data",
    "TrainingContext": "townlet.policy.training.orchestrator",
    "anneal_stage_step": "townlet.policy.training.strategies.anneal.step",
    "init_anneal_state": "townlet.policy.training.strategies.anneal.state",
    "rollout_cycles": "townlet.policy.training.orchestrator",
    "run_anneal": "townlet.policy.training.strategies.anneal.run",
    "run_anneal_with_state": "townlet.policy.training.strategies.anneal.run",
    "run_demo": "townlet.policy.training.demo",
    "run_stages": "townlet.policy.training.orchestrator",
    # telemetry as tables and plots (plot_telemetry needs the plot extra)
    "format_telemetry_table": "townlet.dto.telemetry_table",
    "plot_telemetry": "townlet.plots",
    "telemetry_columns": "townlet.dto.telemetry_table",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'townlet' has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # A blocked or absent torch; any other missing module (an extra) is a real error.
        if exc.name is not None and exc.name.split(".")[0] != "torch":
            raise
        from townlet.errors import TorchNotAvailableError

        raise TorchNotAvailableError(f"townlet.{name}") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
