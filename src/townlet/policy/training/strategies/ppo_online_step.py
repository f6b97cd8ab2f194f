"""One online PPO update as pure functions over a collected batch. Needs torch.

``ppo_update(state, data, cfg, update=u) -> (state, stats)`` folds
:func:`~townlet.policy.training.strategies.ppo_step.ppo_minibatch_update` over ``cfg.num_epochs``
seeded passes of minibatches; ``update_record`` reduces the stats to one telemetry record.

Where the per-minibatch time goes (docs/benchmarks.md, "CartPole"): the permutation is applied
to every field once per pass and minibatches are then contiguous slices (views, no gather per
minibatch), and the stats vectors of all minibatches are read back with one ``tolist`` per
update instead of one device sync per minibatch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import attrs
import numpy as np
import torch
from numpy.typing import NDArray

from townlet.config import PPOConfig
from townlet.dto.policy import PPOTrainingResult
from townlet.envs.gymnasium_adapter import GymnasiumSource
from townlet.errors import NonFiniteTrainingError
from townlet.policy.nn.rng import derive_generator
from townlet.policy.training.strategies.ppo_collect import (
    Trajectory,
    collect_rollout,
    episode_summary,
    rollout_batch,
)
from townlet.policy.training.strategies.ppo_math import (
    PPOMinibatch,
    minibatch_size,
    select_minibatch,
)
from townlet.policy.training.strategies.ppo_step import (
    STATS_FIELDS,
    MinibatchStats,
    PPOState,
    ppo_minibatch_update,
    stats_from_values,
)
from townlet.policy.training.strategies.ppo_summary import (
    BatchFacts,
    EpochCounters,
    PPODatasetInfo,
    summarize_epoch,
)

# Tags of the random streams in derive_generator(seed, tag, update, ...).
ONLINE_PERMUTATION_STREAM = 11
ACTION_STREAM = 12
# The entries of a stats vector that a diverged update turns non-finite first.
_DIVERGENCE_COLUMNS = tuple(STATS_FIELDS.index(k) for k in ("loss_total", "grad_norm", "adv_std"))


def slice_minibatch(data: PPOMinibatch, start: int, stop: int) -> PPOMinibatch:
    """Rows ``start:stop`` of every field (views of ``data``, which is unchanged)."""
    return PPOMinibatch(
        maps=None if data.maps is None else data.maps[start:stop],
        features=data.features[start:stop],
        actions=data.actions[start:stop],
        old_log_probs=data.old_log_probs[start:stop],
        advantages=data.advantages[start:stop],
        returns=data.returns[start:stop],
        old_values=data.old_values[start:stop],
    )


def shuffled_minibatches(
    data: PPOMinibatch, generator: torch.Generator, size: int
) -> list[PPOMinibatch]:
    """A seeded permutation of ``data`` cut into minibatches of ``size`` rows (the last may be
    short). Every row appears exactly once; only ``generator`` supplies randomness."""
    n = len(data)
    perm = torch.randperm(n, generator=generator, device=generator.device)
    shuffled = select_minibatch(data, perm)
    return [slice_minibatch(shuffled, start, start + size) for start in range(0, n, size)]


def _check_rows(rows: list[list[float]], label: str, update: int) -> None:
    for index, row in enumerate(rows, start=1):
        if not all(math.isfinite(row[i]) for i in _DIVERGENCE_COLUMNS):
            raise NonFiniteTrainingError(
                f"PPO loss, gradient norm or advantage std became NaN/inf "
                f"(env={label}, update={update}, minibatch={index})"
            )


def ppo_update(
    state: PPOState, data: PPOMinibatch, cfg: PPOConfig, *, update: int, label: str = "env"
) -> tuple[PPOState, list[MinibatchStats]]:
    """``cfg.num_epochs`` passes of minibatch updates over ``data``; inputs unchanged.

    Pass ``p`` of update ``u`` is shuffled by
    ``derive_generator(state.seed, ONLINE_PERMUTATION_STREAM, u, p)``; the minibatch size is
    :func:`~townlet.policy.training.strategies.ppo_math.minibatch_size`. Counters other than
    ``updates`` are not advanced here.

    Raises :class:`NonFiniteTrainingError` when a minibatch's loss, gradient norm or advantage
    std is NaN/Inf (naming ``label``, the update and the minibatch).
    """
    size = minibatch_size(len(data), cfg)
    device = data.actions.device
    vectors: list[torch.Tensor] = []
    sizes: list[int] = []
    for pass_index in range(cfg.num_epochs):
        generator = derive_generator(
            state.seed, ONLINE_PERMUTATION_STREAM, update, pass_index, device=device
        )
        for minibatch in shuffled_minibatches(data, generator, size):
            # Updates after the fold's first donate the state the fold itself made (no copy).
            state, values = ppo_minibatch_update(state, minibatch, cfg, donate=bool(vectors))
            vectors.append(values)
            sizes.append(len(minibatch))
    rows: list[list[float]] = torch.stack(vectors).tolist()
    _check_rows(rows, label, update)
    return state, [stats_from_values(row, n) for row, n in zip(rows, sizes, strict=True)]


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
) -> tuple[PPOState, NDArray[np.float32], PPOTrainingResult, Trajectory]:
    """Update ``update`` (1-based) of an online run: collect ``steps`` steps of every copy of
    ``source`` from ``observations``, then :func:`ppo_update` on them.

    Returns the new state (``steps`` += the environment steps, ``log_stream_offset`` += 1,
    ``cycle_id`` = ``update - 1``: each update is one rollout cycle), the observations to
    continue from, the update's telemetry record and the trajectory. Actions are sampled from
    ``derive_generator(state.seed, ACTION_STREAM, update)``.
    """
    start = clock()
    device = state.params["value_head.bias"].device
    generator = derive_generator(state.seed, ACTION_STREAM, update, device=device)
    observations, traj = collect_rollout(
        source, observations, state.params, state.spec, steps=steps, generator=generator
    )
    data, facts = rollout_batch(traj, cfg)
    state, stats = ppo_update(state, data, cfg, update=update, label=source.env_id)
    state = attrs.evolve(
        state,
        steps=state.steps + traj.steps,
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
    return state, observations, record, traj
