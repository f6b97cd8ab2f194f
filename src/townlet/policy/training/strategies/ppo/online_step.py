"""One online PPO update as pure functions over a collected batch. Needs torch.

``ppo_update(state, data, cfg, update=u) -> (state, stats)`` is one
:func:`~townlet.policy.training.strategies.ppo.epoch.ppo_epoch` whose batches are the
``cfg.num_epochs`` seeded passes over the collected data (so the stats are read back once per
update); ``update_record`` reduces the stats to one telemetry record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from townlet.config import PPOConfig
from townlet.distributed import Collective
from townlet.distributed.group import all_reduce_sum
from townlet.distributed.parallel import SINGLE, DataParallel, rank_key
from townlet.dto.policy import PPOTrainingResult
from townlet.envs.gymnasium_adapter import GymnasiumSource
from townlet.policy.nn.rng import stream_generator
from townlet.policy.streams import Stream
from townlet.policy.training.strategies.ppo.collect import (
    Trajectory,
    collect_rollout,
    episode_summary,
    rollout_batch,
)
from townlet.policy.training.strategies.ppo.epoch import EpochData, MinibatchUpdate, ppo_epoch
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch
from townlet.policy.training.strategies.ppo.step import (
    MinibatchStats,
    PPOState,
    ppo_minibatch_update,
)
from townlet.policy.training.strategies.ppo.summary import (
    BatchFacts,
    EpochCounters,
    PPODatasetInfo,
    summarize_epoch,
)

# Deprecated names of the streams' tags.
ONLINE_PERMUTATION_STREAM = Stream.ONLINE_PERMUTATION.tag
ACTION_STREAM = Stream.ONLINE_ACTIONS.tag


def update_data(data: PPOMinibatch, cfg: PPOConfig, *, update: int, label: str) -> EpochData:
    """The :class:`EpochData` of online update ``update``: ``cfg.num_epochs`` passes over
    ``data``, pass ``p`` shuffled by ``Stream.ONLINE_PERMUTATION`` at ``(update, p)``."""
    return EpochData(
        batches=(data,) * cfg.num_epochs,
        keys=tuple((update, p) for p in range(cfg.num_epochs)),
        stream=Stream.ONLINE_PERMUTATION,
        label=f"env={label}, update={update}",
    )


def ppo_update(
    state: PPOState,
    data: PPOMinibatch,
    cfg: PPOConfig,
    *,
    update: int,
    label: str = "env",
    parallel: DataParallel = SINGLE,
    minibatch_update: MinibatchUpdate = ppo_minibatch_update,
) -> tuple[PPOState, list[MinibatchStats]]:
    """``cfg.num_epochs`` passes of minibatch updates over ``data`` (one
    :func:`~townlet.policy.training.strategies.ppo.epoch.ppo_epoch` of :func:`update_data`);
    inputs unchanged. Counters other than ``updates`` are not advanced here.

    Raises :class:`NonFiniteTrainingError` when a minibatch's loss, gradient norm or advantage
    std is NaN/Inf (naming ``label``, the update, the pass as ``batch`` and the minibatch).
    """
    epoch = update_data(data, cfg, update=update, label=label)
    state, stats = ppo_epoch(
        state, epoch, cfg, parallel=parallel, minibatch_update=minibatch_update
    )
    return state, list(stats)


def update_record(
    stats: list[MinibatchStats],
    facts: BatchFacts,
    traj: Trajectory,
    info: PPODatasetInfo,
    cfg: PPOConfig,
    counters: EpochCounters,
    *,
    duration_sec: float,
) -> PPOTrainingResult:
    """The telemetry record of one update: the epoch summary of its minibatch stats plus
    ``episode_return_mean``/``episode_length_mean`` of the episodes that ended in ``traj``."""
    record = summarize_epoch(stats, facts, info, cfg, counters, duration_sec=duration_sec)
    return attrs.evolve(record, **episode_summary(traj))


def online_update(
    state: PPOState,
    source: GymnasiumSource,
    observations: NDArray[np.float32],
    cfg: PPOConfig,
    *,
    update: int,
    steps: int,
    clock: Callable[[], float] = time.perf_counter,
    parallel: DataParallel = SINGLE,
    minibatch_update: MinibatchUpdate = ppo_minibatch_update,
) -> tuple[PPOState, NDArray[np.float32], PPOTrainingResult, Trajectory]:
    """Update ``update`` (1-based) of an online run: collect ``steps`` steps of every copy of
    ``source`` from ``observations``, then :func:`ppo_update` on them.

    Returns the new state (``steps`` += the environment steps, ``log_stream_offset`` += 1,
    ``cycle_id`` = ``update - 1``: each update is one rollout cycle), the observations to
    continue from, the update's telemetry record and the trajectory. Actions are sampled from
    ``stream_generator(state.seed, Stream.ONLINE_ACTIONS, update)``.

    With ``parallel`` (own data: every rank steps its own copies) the actions and minibatch
    permutations of rank r > 0 take its rank into their key, the update is the global
    minibatches' and the record's counts and episode means cover every rank's copies.
    """
    start = clock()
    device = state.params["value_head.bias"].device
    key = (update, *rank_key(parallel))
    generator = stream_generator(state.seed, Stream.ONLINE_ACTIONS, *key, device=device)
    observations, traj = collect_rollout(
        source, observations, state.params, state.spec, steps=steps, generator=generator
    )
    data, facts = rollout_batch(traj, cfg)
    state, stats = ppo_update(
        state,
        data,
        cfg,
        update=update,
        label=source.env_id,
        parallel=parallel,
        minibatch_update=minibatch_update,
    )
    state = attrs.evolve(
        state,
        steps=state.steps + traj.steps * parallel.world_size,
        log_stream_offset=state.log_stream_offset + 1,
        cycle_id=update - 1,
    )
    counters = EpochCounters(
        epoch=update,
        steps=state.steps,
        log_stream_offset=state.log_stream_offset,
        cycle_id=state.cycle_id,
    )
    info = PPODatasetInfo(label=source.env_id, data_mode="rollout", rollout_ticks=steps)
    record = update_record(stats, facts, traj, info, cfg, counters, duration_sec=clock() - start)
    if parallel.world_size > 1:
        record = attrs.evolve(record, **global_episode_summary(traj, parallel.group))
    return state, observations, record, traj


def global_episode_summary(traj: Trajectory, group: Collective) -> dict[str, Any]:
    """:func:`~townlet.policy.training.strategies.ppo_collect.episode_summary` over the episodes
    every rank's trajectory ended (one all-reduce)."""
    total, count, length = all_reduce_sum(
        group, [sum(traj.episode_returns), len(traj.episode_returns), sum(traj.episode_lengths)]
    )
    if count == 0:
        return {"episode_return_mean": None, "episode_length_mean": None}
    return {"episode_return_mean": total / count, "episode_length_mean": length / count}
