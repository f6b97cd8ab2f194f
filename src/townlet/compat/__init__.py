"""Compatibility with the original Townlet: its names over townlet's functional API.

Thin adapters, kept so that code written against the reference keeps working while it moves
over (docs/migration.md maps every name):

* :class:`PolicyTrainingOrchestrator` (also ``TrainingOrchestrator``, ``TrainingHarness``) —
  the reference's stateful orchestrator, each method a few lines over ``train_bc``,
  ``train_ppo``, ``run_anneal_with_state``, ``capture_from_config``;
* :func:`load_reference_config` — a reference ``SimulationConfig`` YAML as a townlet
  ``Config`` (the training keys kept, the simulation's own dropped with one warning);
* the reference's DTO names for townlet's result records, which have ``model_dump()``;
* ``townlet-train run --mode replay|rollout|mixed|bc|anneal`` — the reference's
  ``scripts/run_training.py`` (:mod:`townlet.cli.run_cmd`).

Importing this package does not import torch; training methods need it.
"""

from __future__ import annotations

from townlet.compat.config import ReferenceConfigWarning, load_reference_config
from townlet.compat.orchestrator import (
    PolicyTrainingOrchestrator,
    TrainingHarness,
    TrainingOrchestrator,
)
from townlet.dto.policy import AnnealStageResult as AnnealStageResultDTO
from townlet.dto.policy import AnnealSummary as AnnealSummaryDTO
from townlet.dto.policy import BCTrainingResult as BCTrainingResultDTO
from townlet.dto.policy import PPOTrainingResult as PPOTrainingResultDTO
from townlet.dto.policy import TrainingResultBase

__all__ = [
    "AnnealStageResultDTO",
    "AnnealSummaryDTO",
    "BCTrainingResultDTO",
    "PPOTrainingResultDTO",
    "PolicyTrainingOrchestrator",
    "ReferenceConfigWarning",
    "TrainingHarness",
    "TrainingOrchestrator",
    "TrainingResultBase",
    "load_reference_config",
]
