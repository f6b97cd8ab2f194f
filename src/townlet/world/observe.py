"""Observations in the Townlet "hybrid" layout, for all agents at once.

``maps`` (N, 4, 11, 11) float32: an egocentric window centred on the agent (row 0 is north),
channels ``self`` (1 at the centre), ``agents`` (1 where another agent stands), ``objects``
(1 on object tiles) and ``reservations`` (1 on objects someone holds); tiles outside the town
are 0. ``features`` (N, 33) float32 in the order of ``FEATURE_NAMES``, the reference's 33 base
features (``spec/reference-replay_rollout.md`` §2); which ones the town fills is in docs/world.md.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
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
_CENTER = RADIUS * WINDOW + RADIUS
# (121, RADIUS + 1) float32 indicator of each cell's ring; (121,) ones.
_RINGS = (_CELL_DIST[:, None] == np.arange(RADIUS + 1)).astype(np.float32)
_ONES = np.ones(WINDOW * WINDOW, dtype=np.float32)
# Per cell, RADIUS + 1 minus its distance: the largest one holding an agent gives the nearest.
_CLOSENESS_U8 = (RADIUS + 1 - _CELL_DIST).astype(np.uint8)
ByteArray = npt.NDArray[np.uint8]


def _window_bits(state: WorldState) -> ByteArray:
    """(N, 121) every agent's 11×11 window of one padded uint8 grid holding a bit per map
    channel: 1 another agent, 2 an object, 4 an object someone holds (tiles outside are 0)."""
    size, lay = state.config.size, state.layout
    x, y = state.position[:, 0], state.position[:, 1]
    count = np.bincount(y * size + x, minlength=size * size)
    grid = np.zeros((size + 2 * RADIUS, size + 2 * RADIUS), dtype=np.uint8)
    inner = grid[RADIUS : RADIUS + size, RADIUS : RADIUS + size]
    np.left_shift(lay.obj_grid >= 0, 1, out=inner, dtype=np.uint8)
    inner[y, x] |= 1
    held = lay.obj_pos[state.occupant >= 0]
    inner[held[:, 1], held[:, 0]] |= 4
    # One gather of 121 bytes per agent (a third of gathering the three channels apart); the
    # fancy index returns a fresh array, so the centre can be fixed in place: there the agent
    # bit means another agent on the same tile.
    bits = sliding_window_view(grid, (WINDOW, WINDOW))[y, x].reshape(-1, WINDOW * WINDOW)
    bits[:, _CENTER] &= 6
    bits[:, _CENTER] |= count[y * size + x] >= 2
    return bits


def _channels(bits: ByteArray) -> tuple[ByteArray, ByteArray, ByteArray]:
    """The agents, objects and reservations channels of ``bits`` as 0/1 bytes."""
    one = np.uint8(1)
    return bits & one, (bits >> one) & one, bits >> np.uint8(2)


def _maps_into(
    state: WorldState, out: FloatArray | None, channels: tuple[ByteArray, ...]
) -> FloatArray:
    n = state.position.shape[0]
    maps = np.empty((n, 4, WINDOW, WINDOW), dtype=np.float32) if out is None else out
    cells = np.reshape(maps, (n, 4, WINDOW * WINDOW), copy=False)
    for index, channel in enumerate(channels, start=1):
        cells[:, index] = channel
    cells[:, 0] = 0.0
    cells[:, 0, _CENTER] = 1.0
    return maps


def observe_maps(state: WorldState, out: FloatArray | None = None) -> FloatArray:
    """(N, 4, 11, 11) float32 egocentric windows (see the module docstring), written into
    ``out`` (and returned) when given: any (N, 4, 11, 11) float32 array whose last two axes
    can be viewed as one without a copy (e.g. tick ``t`` of an agent-major recording buffer).
    Raises ``ValueError`` for an ``out`` of another shape, dtype or layout."""
    _check_maps_out(state, out)
    return _maps_into(state, out, _channels(_window_bits(state)))


def _check_maps_out(state: WorldState, out: FloatArray | None) -> None:
    if out is not None:
        n = state.position.shape[0]
        _check_out("maps", out, (n, 4, WINDOW, WINDOW))
        np.reshape(out, (n, 4, WINDOW * WINDOW), copy=False)  # raises for a layout that copies


def _check_out(name: str, out: FloatArray, shape: tuple[int, ...]) -> None:
    if out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out {name}: expected float32 {shape}, got {out.dtype} {out.shape}")


def _path_hint(state: WorldState, rows: FloatArray) -> None:
    """Write the one-hot N/S/E/W first step towards the nearest object for the lowest need into
    ``rows`` (4, N), which must be zero."""
    lay = state.layout
    need = np.argmin(state.needs, axis=1)
    target = lay.nearest[need, state.position[:, 1], state.position[:, 0]]
    diff = lay.obj_pos[np.maximum(target, 0)] - state.position
    dx, dy = diff[:, 0], diff[:, 1]
    horizontal = np.abs(dx) >= np.abs(dy)
    col = np.where(horizontal, np.where(dx > 0, 2, 3), np.where(dy > 0, 1, 0))
    moving = np.flatnonzero((target >= 0) & ((dx != 0) | (dy != 0)))
    rows[col[moving], moving] = 1.0


def observe_features(
    state: WorldState, maps: FloatArray, out: FloatArray | None = None
) -> FloatArray:
    """(N, 33) float32 features in ``FEATURE_NAMES`` order (``maps`` from ``observe_maps``),
    written into ``out`` (and returned) when given. Raises ``ValueError`` for an ``out`` of
    another shape or dtype."""
    _check_features_out(state, out)
    rows = _feature_rows(state)
    rows[29:33] = _window_features(maps).T
    return _features_from_rows(rows, out)


def _check_features_out(state: WorldState, out: FloatArray | None) -> None:
    if out is not None:
        _check_out("features", out, (state.needs.shape[0], len(FEATURE_NAMES)))


def _features_from_rows(rows: FloatArray, out: FloatArray | None) -> FloatArray:
    """The (N, 33) features from their (33, N) rows, in ``out`` when given."""
    if out is None:
        return rows.T.copy()
    out[...] = rows.T
    return out


def _feature_rows(state: WorldState) -> FloatArray:
    """(33, N) features, one row per feature (contiguous rows are cheap to fill), with 0-28
    filled (those that need no window) and 29-32 zero."""
    cfg = state.config
    n = state.needs.shape[0]
    f = np.zeros((len(FEATURE_NAMES), n), dtype=np.float32)
    f[0:3] = state.needs.T
    f[3] = state.wallet
    f[4] = state.lateness_counter
    f[5] = on_shift(state, state.tick)
    phase = 2.0 * np.pi * (state.tick % cfg.day_length) / cfg.day_length
    f[6], f[7] = np.sin(phase), np.cos(phase)
    f[8] = state.shifts_attended / np.maximum(state.shifts_done, 1)
    f[9] = state.wages_withheld
    f[10 + shift_status(state), np.arange(n)] = 1.0
    f[15] = np.arange(n) / max(n, 1)
    f[16] = state.reset_flag
    f[17] = np.minimum((state.tick - state.spawn_tick) / cfg.episode_length, 1.0)
    f[18] = strongest_rival(state.rival_ids, state.rival_vals)[1]
    f[19] = state.avoid_count
    f[20] = state.last_action / (NUM_ACTIONS - 1)
    f[21] = state.last_success
    f[22] = state.remaining
    f[23] = state.using >= 0
    f[24] = state.queued >= 0
    _path_hint(state, f[25:29])
    return f


def _window_features(maps: FloatArray) -> FloatArray:
    """Features 29-32 (neighbour, object and reservation ratios, nearest agent distance).

    The maps hold 0/1 floats, so window sums and the agent counts per Chebyshev ring are small
    integers, exact in float32 whatever the order of additions: one matrix product computes
    them all (a fraction of the cost of separate reductions)."""
    n = maps.shape[0]
    cells = WINDOW * WINDOW
    flat = np.reshape(maps, (n, 4, cells), copy=False)
    agents = flat[:, 1] @ _RINGS  # (N, RADIUS + 1) agents at each distance
    sums = flat[:, 2:] @ _ONES
    seen = agents > 0
    dist = np.where(seen.any(axis=1), np.argmax(seen, axis=1), RADIUS + 1)
    out = np.empty((n, 4), dtype=np.float32)
    out[:, 0] = agents.sum(axis=1) / (cells - 1)
    out[:, 1] = sums[:, 0] / cells
    out[:, 2] = sums[:, 1] / cells
    out[:, 3] = dist / (RADIUS + 1)
    return out


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
    _check_maps_out(state, maps_out)
    _check_features_out(state, features_out)
    # The same values as ``observe_features(state, observe_maps(state))``, with the window
    # features counted on the packed bytes instead of the float maps.
    channels = _channels(_window_bits(state))
    maps = _maps_into(state, maps_out, channels)
    rows = _feature_rows(state)
    _channel_features(channels, rows[29:33])
    return maps, _features_from_rows(rows, features_out)


def _channel_features(channels: tuple[ByteArray, ...], rows: FloatArray) -> None:
    """Write features 29-32 from the 0/1 byte channels of ``_channels`` into ``rows`` (4, N)."""
    agents, objects, held = channels
    cells = WINDOW * WINDOW
    for row, (channel, count) in enumerate(((agents, cells - 1), (objects, cells), (held, cells))):
        total = np.add.reduce(channel, axis=1, dtype=np.uint16).astype(np.float32)
        rows[row] = total / count
    nearest = RADIUS + 1 - (agents * _CLOSENESS_U8).max(axis=1)
    rows[3] = nearest / (RADIUS + 1)


observe_world = observe  # the name exported from ``townlet``
