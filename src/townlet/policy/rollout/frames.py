"""Frames of a capture, held as preallocated ``(T, N, …)`` arrays, and their conversion to one
:class:`ReplaySample` per agent.

Frame ``t`` of agent ``i`` pairs the observation the agent acted on at tick ``t`` with the
action, its log-probability and the value of that observation (all computed from that same
observation), and the reward and done the tick produced. ``value_preds`` gets one more entry:
the value of the observation after the last frame, or 0 when that frame ended an episode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from townlet.policy.replay import TRAINING_ARRAY_FIELDS, ReplaySample, compute_sample_metrics
from townlet.policy.rollout.policies import PolicyOutput
from townlet.policy.rollout.sources import Obs, SourceInfo, Transition

OBSERVATION_ALIGNMENT = "decision_time"


class FrameRecorder:
    """Preallocated frame arrays for ``ticks`` ticks of ``len(info.agent_ids)`` agents.

    Memory: ``ticks · N · (C·H·W + D) · 4`` bytes for the observations (the town's 8 agents ×
    500 ticks: 8 MB). ``live`` (T, N) is kept only for sources whose agents can be absent.
    """

    def __init__(self, ticks: int, info: SourceInfo) -> None:
        n, d = len(info.agent_ids), len(info.feature_names)
        self.info = info
        self.ticks = ticks
        self.features = np.zeros((ticks, n, d), dtype=np.float32)
        self.maps = (
            np.zeros((ticks, n, *info.map_shape), dtype=np.float32) if info.has_map else None
        )
        self.actions = np.zeros((ticks, n), dtype=np.int64)
        self.log_probs = np.zeros((ticks, n), dtype=np.float32)
        self.values = np.zeros((ticks, n), dtype=np.float32)
        self.rewards = np.zeros((ticks, n), dtype=np.float32)
        self.dones = np.zeros((ticks, n), dtype=np.bool_)
        self.live: NDArray[np.bool_] | None = None
        self.bootstrap = np.zeros(n, dtype=np.float32)

    def write(self, tick: int, obs: Obs, output: PolicyOutput, outcome: Transition) -> None:
        """Record tick ``tick``: the observation acted on, the policy's output, the outcome."""
        rows: Any = slice(None) if obs.live is None else obs.live
        if obs.live is not None:
            if self.live is None:
                self.live = np.zeros(self.actions.shape, dtype=np.bool_)
            self.live[tick, rows] = True
        self.features[tick, rows] = obs.features
        if self.maps is not None and obs.maps is not None:
            self.maps[tick, rows] = obs.maps
        self.actions[tick, rows], self.log_probs[tick, rows], self.values[tick, rows] = output
        self.rewards[tick, rows] = outcome.rewards
        self.dones[tick, rows] = outcome.dones

    def write_bootstrap(self, obs: Obs, values: NDArray[np.float32]) -> None:
        """Values of the observations after the last tick (agents absent then keep 0)."""
        self.bootstrap[:] = 0.0
        self.bootstrap[slice(None) if obs.live is None else obs.live] = values

    def agent_arrays(self, index: int) -> dict[str, NDArray[Any]] | None:
        """The seven replay arrays of agent ``index`` (None when it never acted)."""
        pick: Any = slice(None) if self.live is None else self.live[:, index]
        dones = self.dones[pick, index]
        if dones.size == 0:
            return None
        last = 0.0 if dones[-1] else float(self.bootstrap[index])
        values = np.append(self.values[pick, index], np.float32(last))
        features = self.features[pick, index]
        grid = (
            self.maps[pick, index]
            if self.maps is not None
            else np.zeros((len(dones), 0, 0, 0), dtype=np.float32)
        )
        return {
            "map": grid,
            "features": features,
            "actions": self.actions[pick, index],
            "old_log_probs": self.log_probs[pick, index],
            "value_preds": values,
            "rewards": self.rewards[pick, index],
            "dones": dones,
        }


def sample_metadata(
    info: SourceInfo, index: int, timesteps: int, capture: dict[str, Any]
) -> dict[str, Any]:
    """The sidecar of agent ``index``: observation layout (reference key order), training
    array keys, then ``agent_id``/``frame_count`` and the capture settings."""
    meta: dict[str, Any] = {
        "variant": "hybrid" if info.has_map else "vector",
        "map_shape": list(info.map_shape),
        "map_channels": list(info.map_channels),
        "feature_names": list(info.feature_names),
        "embedding_slot": index,
        "training_arrays": list(TRAINING_ARRAY_FIELDS),
        "timesteps": timesteps,
        "value_pred_steps": timesteps + 1,
    }
    lookup = info.action_lookup()
    if lookup is not None:
        meta["action_lookup"] = lookup
    meta["action_dim"] = info.action_dim
    meta["agent_id"] = info.agent_ids[index]
    meta["frame_count"] = timesteps
    meta.update(capture)
    meta["observation_alignment"] = OBSERVATION_ALIGNMENT
    return meta


def recorded_samples(recorder: FrameRecorder, capture: dict[str, Any]) -> list[ReplaySample]:
    """One :class:`ReplaySample` per agent that acted, with ``metrics`` in its sidecar.

    Metrics come from a map-less copy (they never read the map), so the large map arrays are
    validated once.
    """
    samples = []
    for index in range(len(recorder.info.agent_ids)):
        arrays = recorder.agent_arrays(index)
        if arrays is None:
            continue
        meta = sample_metadata(recorder.info, index, len(arrays["dones"]), capture)
        light = {k: a for k, a in arrays.items() if k != "map"}
        metrics = compute_sample_metrics(ReplaySample(**light, metadata=meta))
        samples.append(ReplaySample(**arrays, metadata={**meta, "metrics": metrics}))
    return samples
