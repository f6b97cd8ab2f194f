"""Observations in the Townlet "hybrid" layout, for all agents at once.

``maps`` (N, 4, 11, 11) float32: an egocentric window centred on the agent (row 0 is north),
channels ``self`` (1 at the centre), ``agents`` (1 where another agent stands), ``objects``
(1 on object tiles) and ``reservations`` (1 on objects someone holds); tiles outside the town
are 0. ``features`` (N, 33) float32 in the order of ``FEATURE_NAMES``, the reference's 33 base
features (``spec/reference-replay_rollout.md`` §2); which ones the town fills is in docs/world.md.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from townlet.world.config import WorldConfig
from townlet.world.rivalry import strongest_rival
from townlet.world.state import NUM_ACTIONS, FloatArray, WorldState
from townlet.world.work import on_shift, shift_status

WINDOW = 11
RADIUS = WINDOW // 2
MAP_CHANNELS: tuple[str, ...] = ("self", "agents", "objects", "reservations")
FEATURE_NAMES: tuple[str, ...] = (
    "need_hunger", "need_hygiene", "need_energy", "wallet", "lateness_counter", "on_shift",
    "time_sin", "time_cos", "attendance_ratio", "wages_withheld",
    "shift_pre", "shift_on_time", "shift_late", "shift_absent", "shift_post",
    "embedding_slot_norm", "ctx_reset_flag", "episode_progress",
    "rivalry_max", "rivalry_avoid_count",
    "last_action_id_hash", "last_action_success", "last_action_duration", "reservation_active",
    "in_queue",
    "path_hint_north", "path_hint_south", "path_hint_east", "path_hint_west",
    "neighbor_agent_ratio", "neighbor_object_ratio", "reserved_tile_ratio",
    "nearest_agent_distance",
)  # fmt: skip
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
# Chebyshev distance of every window cell from the centre, for ``nearest_agent_distance``.
_CELL_DIST = np.maximum(*np.abs(np.mgrid[-RADIUS : RADIUS + 1, -RADIUS : RADIUS + 1])).ravel()
_CELL_DIST_U8 = _CELL_DIST.astype(np.uint8)


def observe_maps(state: WorldState, out: FloatArray | None = None) -> FloatArray:
    """(N, 4, 11, 11) float32 egocentric windows (see the module docstring), written into
    ``out`` (and returned) when given: any (N, 4, 11, 11) float32 array whose last two axes
    can be viewed as one without a copy (e.g. tick ``t`` of an agent-major recording buffer).
    Raises ``ValueError`` for an ``out`` of another shape, dtype or layout."""
    size, lay = state.config.size, state.layout
    count = np.bincount(state.position[:, 1] * size + state.position[:, 0], minlength=size * size)
    # uint8 grids: counts are capped at 2, which leaves min(count - self, 1) below unchanged.
    grids = np.zeros((3, size + 2 * RADIUS, size + 2 * RADIUS), dtype=np.uint8)
    inner = (slice(RADIUS, RADIUS + size), slice(RADIUS, RADIUS + size))
    grids[0][inner] = np.minimum(count, 2).reshape(size, size)
    grids[1][inner] = lay.obj_grid >= 0
    held = lay.obj_pos[state.occupant >= 0]
    grids[2, held[:, 1] + RADIUS, held[:, 0] + RADIUS] = 1
    n = state.position.shape[0]
    maps = np.empty((n, 4, WINDOW, WINDOW), dtype=np.float32) if out is None else out
    _check_out("maps", maps, (n, 4, WINDOW, WINDOW))
    np.reshape(maps, (n, 4, WINDOW * WINDOW), copy=False)  # the layout observe_features needs
    # Every agent's (3, 11, 11) window is one block of a sliding-window view of the padded
    # grids, gathered by (y, x) in one indexing call (~1.8x faster than a flat np.take per
    # channel at 2048 agents) and cast to float32 as it is stored.
    windows = np.moveaxis(sliding_window_view(grids, (WINDOW, WINDOW), axis=(1, 2)), 0, 2)
    maps[:, 1:] = windows[state.position[:, 1], state.position[:, 0]]
    maps[:, 1, RADIUS, RADIUS] -= 1.0  # the agent itself is the self channel
    np.minimum(maps[:, 1], 1.0, out=maps[:, 1])
    maps[:, 0] = 0.0
    maps[:, 0, RADIUS, RADIUS] = 1.0
    return maps


def _check_out(name: str, out: FloatArray, shape: tuple[int, ...]) -> None:
    if out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out {name}: expected float32 {shape}, got {out.dtype} {out.shape}")


def _path_hint(state: WorldState) -> FloatArray:
    """One-hot (N,4) N/S/E/W first step towards the nearest object for the lowest need."""
    lay = state.layout
    need = np.argmin(state.needs, axis=1)
    target = lay.nearest[need, state.position[:, 1], state.position[:, 0]]
    diff = lay.obj_pos[np.maximum(target, 0)] - state.position
    horizontal = np.abs(diff[:, 0]) >= np.abs(diff[:, 1])
    hint = np.zeros((need.size, 4), dtype=np.float32)
    rows = np.arange(need.size)
    col = np.where(horizontal, np.where(diff[:, 0] > 0, 2, 3), np.where(diff[:, 1] > 0, 1, 0))
    moving = (target >= 0) & (np.abs(diff).sum(axis=1) > 0)
    hint[rows[moving], col[moving]] = 1.0
    return hint


def observe_features(
    state: WorldState, maps: FloatArray, out: FloatArray | None = None
) -> FloatArray:
    """(N, 33) float32 features in ``FEATURE_NAMES`` order (``maps`` from ``observe_maps``),
    written into ``out`` (and returned) when given. Raises ``ValueError`` for an ``out`` of
    another shape or dtype."""
    cfg = state.config
    n = state.needs.shape[0]
    if out is None:
        f = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    else:
        _check_out("features", out, (n, len(FEATURE_NAMES)))
        f = out
        f[...] = 0.0
    f[:, 0:3] = state.needs
    f[:, 3] = state.wallet
    f[:, 4] = state.lateness_counter
    f[:, 5] = on_shift(state, state.tick)
    phase = 2.0 * np.pi * (state.tick % cfg.day_length) / cfg.day_length
    f[:, 6], f[:, 7] = np.sin(phase), np.cos(phase)
    f[:, 8] = state.shifts_attended / np.maximum(state.shifts_done, 1)
    f[:, 9] = state.wages_withheld
    f[np.arange(n), 10 + shift_status(state)] = 1.0
    f[:, 15] = np.arange(n) / max(n, 1)
    f[:, 16] = state.reset_flag
    f[:, 17] = np.minimum((state.tick - state.spawn_tick) / cfg.episode_length, 1.0)
    f[:, 18] = strongest_rival(state.rival_ids, state.rival_vals)[1]
    f[:, 19] = state.avoid_count
    f[:, 20] = state.last_action / (NUM_ACTIONS - 1)
    f[:, 21] = state.last_success
    f[:, 22] = state.remaining
    f[:, 23] = state.using >= 0
    f[:, 24] = state.queued >= 0
    f[:, 25:29] = _path_hint(state)
    flat = np.reshape(maps, (n, 4, WINDOW * WINDOW), copy=False)
    cells = WINDOW * WINDOW
    # One reduction for the three channels (sums of 0/1 floats are exact in any order), and
    # the nearest-agent search over uint8 temporaries: same values, a fraction of the traffic.
    sums = flat[:, 1:].sum(axis=2)
    f[:, 29] = sums[:, 0] / (cells - 1)
    f[:, 30] = sums[:, 1] / cells
    f[:, 31] = sums[:, 2] / cells
    dist = np.where(flat[:, 1] > 0, _CELL_DIST_U8, np.uint8(RADIUS + 1)).min(axis=1)
    f[:, 32] = dist / (RADIUS + 1)
    return f


def observe(
    state: WorldState,
    config: WorldConfig | None = None,
    *,
    out: tuple[FloatArray | None, FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """``(maps (N,4,11,11), features (N,33))`` float32 for every agent of ``state``.

    ``out``: ``(maps, features)`` arrays to write into and return instead of new ones (a
    ``None`` maps entry gets a new array) — a capture passes views of its recording buffers.
    ``config`` defaults to ``state.config``; a different one raises ``ValueError``, as does an
    ``out`` array of the wrong shape, dtype or layout.
    """
    if config is not None and config is not state.config and config != state.config:
        raise ValueError("config: expected the config the state was reset with")
    maps_out, features_out = (None, None) if out is None else out
    maps = observe_maps(state, maps_out)
    return maps, observe_features(state, maps, features_out)


observe_world = observe  # the name exported from ``townlet``
