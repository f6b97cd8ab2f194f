"""Frames of a capture, held agent-major in preallocated ``(N, T, …)`` arrays, and their
conversion to one :class:`ReplaySample` per agent.

Frame ``t`` of agent ``i`` pairs the observation the agent acted on at tick ``t`` with the
action, its log-probability and the value of that observation (all computed from that same
observation), and the reward and done the tick produced. ``value_preds`` gets one more entry:
the value of the observation after the last frame, or 0 when that frame ended an episode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from townlet.policy.replay import (
    TRAINING_ARRAY_FIELDS,
    ReplaySample,
    compute_sample_metrics,
    samples_from_block,
)
from townlet.policy.rollout.batch_metrics import batch_sample_metrics
from townlet.policy.rollout.policies import PolicyOutput
from townlet.policy.rollout.sources import Obs, ObsSlot, SourceInfo, Transition
from townlet.policy.rollout.workspace import BufferPool, Field, allocate

OBSERVATION_ALIGNMENT = "decision_time"


class FrameRecorder:
    """The frames of a capture, agent-major: ``maps`` (N, T, C, H, W) (None without a map),
    ``features`` (N, T, D), ``actions``/``log_probs``/``rewards``/``dones`` (N, T) and
    ``values`` (N, T+1, the last column the bootstrap value).

    Agent ``i``'s sample is made of the views ``maps[i]``, ``features[i]``, … — no copy, no
    transposition. A source that writes observations in place (the town, through
    :meth:`slot`) fills ``maps``/``features`` directly; other observations are copied in by
    :meth:`write`. Sources whose agents can be absent (PettingZoo) also fill ``live``
    (N, T) and each sample keeps only its agent's live ticks (a copy).

    The arrays are views of one block from ``pool`` (default: the module pool of
    :mod:`~townlet.policy.rollout.workspace`, reused across captures once released).
    """

    def __init__(self, ticks: int, info: SourceInfo, pool: BufferPool | None = None) -> None:
        n = len(info.agent_ids)
        self.info = info
        self.ticks = ticks
        self.recorded = 0
        fields: list[Field] = [
            ("features", (n, ticks, len(info.feature_names)), np.float32),
            ("actions", (n, ticks), np.int64),
            ("log_probs", (n, ticks), np.float32),
            ("values", (n, ticks + 1), np.float32),
            ("rewards", (n, ticks), np.float32),
            ("dones", (n, ticks), np.bool_),
        ]
        if info.has_map:
            fields.insert(0, ("maps", (n, ticks, *info.map_shape), np.float32))
        arrays = allocate(fields, pool)  # reused memory: every entry read is written first
        self.maps = arrays.get("maps")
        self.features = arrays["features"]
        self.actions = arrays["actions"]
        self.log_probs = arrays["log_probs"]
        self.values = arrays["values"]
        self.rewards = arrays["rewards"]
        self.dones = arrays["dones"]
        self.values[:, ticks] = 0.0
        self.live: NDArray[np.bool_] | None = None
        self._issued: dict[int, NDArray[np.float32]] = {}  # tick -> features view handed out

    def slot(self, tick: int) -> ObsSlot | None:
        """Where the observations of tick ``tick`` go, for a source that writes them in place:
        ``(maps (N, C, H, W) or None, features (N, D))`` views; None past the last tick."""
        if tick >= self.ticks:
            return None
        maps = None if self.maps is None else self.maps[:, tick]
        features = self._issued[tick] = self.features[:, tick]
        return maps, features

    def write(self, tick: int, obs: Obs, output: PolicyOutput, outcome: Transition) -> None:
        """Record tick ``tick``: the observation acted on, the policy's output, the outcome."""
        rows: Any = slice(None)
        if obs.live is not None:
            if self.live is None:
                self.live = np.zeros(self.dones.shape, np.bool_)
                self.live[:, :tick] = True
            rows = obs.live
            self.live[rows, tick] = True
        elif self.live is not None:
            self.live[:, tick] = True
        if obs.features is not self._issued.pop(tick, None):  # not written in place
            if self.maps is not None and obs.maps is not None:
                self.maps[rows, tick] = obs.maps
            self.features[rows, tick] = obs.features
        self.actions[rows, tick], self.log_probs[rows, tick], self.values[rows, tick] = output
        self.rewards[rows, tick], self.dones[rows, tick] = outcome.rewards, outcome.dones
        self.recorded = tick + 1

    def write_bootstrap(self, obs: Obs, values: NDArray[np.float32]) -> None:
        """Values of the observations after the last tick (agents absent then keep 0); an
        agent whose last recorded frame ended an episode bootstraps from 0."""
        column = self.values[:, self.ticks]
        column[:] = 0.0
        column[slice(None) if obs.live is None else obs.live] = values
        if self.live is None:
            column[self.dones[:, -1]] = 0.0

    def iter_agent_arrays(self) -> Iterator[tuple[int, dict[str, NDArray[Any]]]]:
        """``(agent index, the seven replay arrays)`` for every agent that acted, in order."""
        if self.recorded != self.ticks:
            raise RuntimeError(f"recorded {self.recorded} of {self.ticks} ticks")
        for index in range(len(self.info.agent_ids)):
            arrays = self._agent_arrays(index)
            if arrays is not None:
                yield index, arrays

    def _agent_arrays(self, index: int) -> dict[str, NDArray[Any]] | None:
        i = index
        if self.live is None:
            values = self.values[i]
            pick: Any = slice(None)
        else:
            pick = self.live[i]
            if not pick.any():
                return None
            values = self.values[i, : self.ticks][pick]
            last_done = self.dones[i][pick][-1]
            values = np.append(values, 0.0 if last_done else self.values[i, self.ticks])
        dones = self.dones[i][pick]
        grid = self.maps[i][pick] if self.maps is not None else None
        return {
            "map": grid if grid is not None else np.zeros((len(dones), 0, 0, 0), np.float32),
            "features": self.features[i][pick],
            "actions": self.actions[i][pick],
            "old_log_probs": self.log_probs[i][pick],
            "value_preds": values,
            "rewards": self.rewards[i][pick],
            "dones": dones,
        }


def sample_metadata(
    info: SourceInfo,
    index: int,
    timesteps: int,
    capture: dict[str, Any],
    lookup: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The sidecar of agent ``index``: observation layout (reference key order), training
    array keys, then ``agent_id``/``frame_count`` and the capture settings. ``lookup``:
    ``info.action_lookup()`` when the caller already has it (a copy is stored)."""
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
    lookup = info.action_lookup() if lookup is None else dict(lookup)
    if lookup is not None:
        meta["action_lookup"] = lookup
    meta["action_dim"] = info.action_dim
    meta["agent_id"] = info.agent_ids[index]
    meta["frame_count"] = timesteps
    meta.update(capture)
    meta["observation_alignment"] = OBSERVATION_ALIGNMENT
    return meta


def _all_metrics(recorder: FrameRecorder) -> list[dict[str, float]] | None:
    """Every agent's metrics in one batch when every agent acted every tick, else None."""
    if recorder.live is not None:
        return None
    return batch_sample_metrics(
        recorder.info,
        recorder.features,
        recorder.actions,
        recorder.log_probs,
        recorder.values,
        recorder.rewards,
    )


def recorded_samples(recorder: FrameRecorder, capture: dict[str, Any]) -> list[ReplaySample]:
    """One :class:`ReplaySample` per agent that acted, with ``metrics`` in its sidecar.

    The samples' arrays are read-only views of the recorder's (agent-major) arrays. When every
    agent acted every tick the block is validated once (:func:`samples_from_block`).
    """
    if recorder.recorded != recorder.ticks:
        raise RuntimeError(f"recorded {recorder.recorded} of {recorder.ticks} ticks")
    lookup = recorder.info.action_lookup()
    batched = _all_metrics(recorder)
    if batched is not None:
        metas = [
            {**sample_metadata(recorder.info, i, recorder.ticks, capture, lookup), "metrics": m}
            for i, m in enumerate(batched)
        ]
        block = {
            "map": recorder.maps,
            "features": recorder.features,
            "actions": recorder.actions,
            "old_log_probs": recorder.log_probs,
            "value_preds": recorder.values,
            "rewards": recorder.rewards,
            "dones": recorder.dones,
        }
        return samples_from_block(block, metas)
    samples = []
    for index, arrays in recorder.iter_agent_arrays():
        meta = sample_metadata(recorder.info, index, len(arrays["dones"]), capture, lookup)
        # Metrics are not validated by ReplaySample, so a sample measured one by one is built
        # once with an empty ``metrics`` dict (last key, as the sidecar has it) filled in
        # afterwards: the record holds a shallow copy of ``meta``, so this same dict.
        metrics: dict[str, float] = {}
        sample = ReplaySample(**arrays, metadata={**meta, "metrics": metrics})
        metrics.update(compute_sample_metrics(sample))
        samples.append(sample)
    return samples
