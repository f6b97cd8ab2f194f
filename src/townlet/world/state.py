"""The town's state: ids and tables, the ``WorldState`` record and ``reset``.

All per-agent quantities are arrays indexed by agent (length N); per-object ones by object (M).
The static layout (where objects stand, the nearest object of each category from every tile) is
computed once in ``reset`` and shared, unchanged, by every later state.
"""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from townlet.world.config import OBJECT_KINDS, WorldConfig

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
Int32Array = npt.NDArray[np.int32]

# Action ids (documented in docs/world.md; stable, part of every captured replay).
WAIT, MOVE_NORTH, MOVE_SOUTH, MOVE_EAST, MOVE_WEST, USE, CHAT, YIELD = range(8)
ACTION_NAMES: tuple[str, ...] = (
    "wait",
    "move_north",
    "move_south",
    "move_east",
    "move_west",
    "use",
    "chat",
    "yield",
)
NUM_ACTIONS = len(ACTION_NAMES)
# (dx, dy) per action; north is y - 1 (row 0 is the top of the map).
ACTION_DELTAS: IntArray = np.array(
    [[0, 0], [0, -1], [0, 1], [1, 0], [-1, 0], [0, 0], [0, 0], [0, 0]], dtype=np.int64
)

NEED_NAMES: tuple[str, ...] = ("hunger", "hygiene", "energy")
# Object categories: the three needs, then work.
HUNGER, HYGIENE, ENERGY, WORK = range(4)
NUM_CATEGORIES = 4
KIND_CATEGORY: IntArray = np.array([HUNGER, HUNGER, HYGIENE, ENERGY, WORK], dtype=np.int64)
# Per kind (fridge, stove, shower, bed, desk): ticks one use lasts, need restored per tick, and
# the price as a multiple of ``meal_cost`` (a cold meal costs more than cooking, but is quicker).
KIND_DURATION: IntArray = np.array([4, 6, 4, 10, 10], dtype=np.int64)
KIND_GAIN: FloatArray = np.array([0.1, 0.12, 0.12, 0.07, 0.0], dtype=np.float32)
KIND_COST: FloatArray = np.array([1.0, 0.5, 0.0, 0.0, 0.0], dtype=np.float32)
NEAR_RADIUS = 2  # Manhattan radius for "nearby" (shared meals, coworkers)
NEAR_SLOTS = 8


@attrs.frozen(kw_only=True, eq=False)
class WorldLayout:
    """Static object layout. ``obj_grid[y, x]`` is the object on a tile or -1; ``nearest[c, y, x]``
    the nearest object of category ``c`` (Manhattan, -1 when the town has none); ``obj_near[m]``
    other objects of the same category within ``NEAR_RADIUS`` of object ``m`` (-1 padded)."""

    obj_pos: IntArray
    obj_kind: IntArray
    obj_category: IntArray
    obj_grid: IntArray
    nearest: IntArray
    obj_near: IntArray
    # Derived lookup tables (computed from the fields above when not given): ``padded_grid``
    # is ``obj_grid`` with a border of -1, flattened, so the 4-neighbours of tile (x, y) are
    # constant offsets from ``(y + 1) * (size + 2) + x + 1`` with no bounds checks. Per flat
    # tile ``y * size + x``, ``reach_first`` is the first object on the tile or its
    # 4-neighbours (N, S, E, W), or -1, and ``reach_choice`` whether another object of that
    # category is also in reach: only there does ``object_in_reach`` depend on who holds what.
    padded_grid: Int32Array = attrs.field(
        default=attrs.Factory(lambda lay: _padded_grid(lay.obj_grid), takes_self=True)
    )
    reach_first: Int32Array = attrs.field(
        default=attrs.Factory(lambda lay: _reach_first(lay), takes_self=True)
    )
    reach_choice: BoolArray = attrs.field(
        default=attrs.Factory(lambda lay: _reach_choice(lay), takes_self=True)
    )


@attrs.frozen(kw_only=True, eq=False)
class WorldState:
    """The whole town at one tick. Never mutated: ``step`` returns a new record.

    Agents: ``position`` (N,2) x,y; ``needs`` (N,3) in [0,1]; ``wallet``; ``using`` the object
    held (-1 none) with ``remaining`` ticks; ``queued`` the object waited for (-1 none) since tick
    ``queue_since``; rivalry as ``rivalry_slots`` (agent id, value) pairs per agent in
    ``rival_ids``/``rival_vals`` (the strongest ties; weaker ones are forgotten, like the
    reference's bounded relationship ledger); work counters; last action and its success.
    Objects: ``occupant`` (-1 free). ``seed`` and ``tick`` fix the randomness of the next step.
    """

    config: WorldConfig
    layout: WorldLayout
    seed: int
    tick: int
    position: IntArray
    needs: FloatArray
    wallet: FloatArray
    using: IntArray
    remaining: IntArray
    queued: IntArray
    queue_since: IntArray
    occupant: IntArray
    rival_ids: IntArray
    rival_vals: FloatArray
    avoid_count: IntArray
    shift_start: IntArray
    arrived: IntArray
    lateness_counter: IntArray
    shifts_done: IntArray
    shifts_attended: IntArray
    wages_withheld: FloatArray
    last_action: IntArray
    last_success: BoolArray
    spawn_tick: IntArray
    reset_flag: BoolArray


def _padded_grid(obj_grid: IntArray) -> Int32Array:
    """``obj_grid`` framed by a border of -1 tiles, flattened ((size + 2)², int32)."""
    return np.pad(obj_grid.astype(np.int32), 1, constant_values=-1).ravel()


def _neighbour_offsets(size: int) -> IntArray:
    """Flat offsets in a padded grid of the tile itself and its N, S, E, W neighbours."""
    side = size + 2
    return np.array([0, -side, side, 1, -1], dtype=np.int64)


def _padded_index(position: IntArray, size: int) -> IntArray:
    """Flat index of each (x, y) in a grid padded by one tile on every side."""
    return (position[:, 1] + 1) * (size + 2) + (position[:, 0] + 1)


def _first_present(cands: IntArray) -> IntArray:
    """Per row, the first entry >= 0 (columns in order), or -1 when there is none."""
    out = cands[:, -1].copy()
    for col in range(cands.shape[1] - 2, -1, -1):
        np.copyto(out, cands[:, col], where=cands[:, col] >= 0)
    return out


def _reach_views(layout: WorldLayout) -> list[Int32Array]:
    """The tile itself, then its N, S, E, W neighbours, as (size, size) views of the padded
    object grid."""
    size = layout.obj_grid.shape[0]
    padded = layout.padded_grid.reshape(size + 2, size + 2)
    return [
        padded[1 + dy : size + 1 + dy, 1 + dx : size + 1 + dx]
        for dx, dy in ((0, 0), (0, -1), (0, 1), (1, 0), (-1, 0))
    ]


def _reach_first(layout: WorldLayout) -> Int32Array:
    """``reach_first`` (see ``WorldLayout``), flat per tile."""
    views = _reach_views(layout)
    first = views[-1].copy()
    for view in views[-2::-1]:
        np.copyto(first, view, where=view >= 0)
    return first.ravel()


def _reach_choice(layout: WorldLayout) -> BoolArray:
    """``reach_choice`` (see ``WorldLayout``), flat per tile; needs ``reach_first``."""
    category = np.append(layout.obj_category, -1)  # index -1 (no object) reads -1
    wanted = category[layout.reach_first].reshape(layout.obj_grid.shape)
    same = np.zeros(layout.obj_grid.shape, dtype=np.int8)
    for view in _reach_views(layout):
        same += (view >= 0) & (category[view] == wanted)
    return np.asarray(same > 1).ravel()


def nearest_table(obj_pos: IntArray, obj_category: IntArray, size: int) -> IntArray:
    """(4, size, size) nearest object of each category by breadth-first flooding (ties: lowest
    direction order N, S, E, W), so the cost grows with the tiles, not tiles × objects."""
    table = np.full((NUM_CATEGORIES, size, size), -1, dtype=np.int64)
    for cat in range(NUM_CATEGORIES):
        grid = table[cat]
        ids = np.flatnonzero(obj_category == cat)
        if ids.size == 0:
            continue
        grid[obj_pos[ids, 1], obj_pos[ids, 0]] = ids
        while (grid < 0).any():
            _flood_once(grid)
    return table


def _flood_once(grid: IntArray) -> None:
    """One flooding round in place: every empty tile takes the value its N, S, E or W neighbour
    (in that order of preference) had at the start of the round."""
    before = grid.copy()
    for dst, src in (
        (grid[1:, :], before[:-1, :]),  # from the north neighbour
        (grid[:-1, :], before[1:, :]),  # from the south
        (grid[:, :-1], before[:, 1:]),  # from the east
        (grid[:, 1:], before[:, :-1]),  # from the west
    ):
        np.copyto(dst, src, where=(dst < 0) & (src >= 0))


def make_layout(config: WorldConfig) -> WorldLayout:
    """Build the static layout arrays from ``config.objects``."""
    size = config.size
    kinds = np.array([OBJECT_KINDS.index(o.kind) for o in config.objects], dtype=np.int64)
    pos = np.array([o.position for o in config.objects], dtype=np.int64).reshape(-1, 2)
    category = KIND_CATEGORY[kinds]
    grid = np.full((size, size), -1, dtype=np.int64)
    grid[pos[:, 1], pos[:, 0]] = np.arange(len(kinds))
    return WorldLayout(
        obj_pos=pos,
        obj_kind=kinds,
        obj_category=category,
        obj_grid=grid,
        nearest=nearest_table(pos, category, size),
        obj_near=near_table(pos, category, grid),
    )


def near_table(obj_pos: IntArray, obj_category: IntArray, obj_grid: IntArray) -> IntArray:
    """(M, NEAR_SLOTS) per object, the other objects of its category within ``NEAR_RADIUS``
    (Manhattan), lowest ids first, -1 padded. Looks only at the tiles within the radius (one
    object per tile), so the cost grows with the objects, not objects²."""
    r = NEAR_RADIUS
    padded = np.pad(obj_grid, r, constant_values=-1)
    offsets = [(dx, dy) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
               if 0 < abs(dx) + abs(dy) <= r]  # fmt: skip
    cols = [padded[obj_pos[:, 1] + r + dy, obj_pos[:, 0] + r + dx] for dx, dy in offsets]
    cands = np.stack(cols, axis=1).reshape(obj_pos.shape[0], len(offsets))
    same = (cands >= 0) & (obj_category[np.maximum(cands, 0)] == obj_category[:, None])
    none = np.iinfo(np.int64).max
    ids = np.sort(np.where(same, cands, none), axis=1)[:, :NEAR_SLOTS]
    near = np.full((obj_pos.shape[0], NEAR_SLOTS), -1, dtype=np.int64)
    near[:, : ids.shape[1]] = np.where(ids == none, -1, ids)
    return near


def spawn_needs(rng: np.random.Generator, count: int) -> FloatArray:
    """Needs of freshly spawned agents: uniform in [0.6, 1.0)."""
    return rng.uniform(0.6, 1.0, size=(count, 3)).astype(np.float32)


def spawn_positions(rng: np.random.Generator, count: int, size: int) -> IntArray:
    """Uniform random tiles for freshly spawned agents."""
    return rng.integers(0, size, size=(count, 2), dtype=np.int64)


def reset(config: WorldConfig, seed: int) -> WorldState:
    """The town at tick 0: agents on random tiles with needs in [0.6, 1), wallets at
    ``config.initial_wallet``, nothing held or queued, no rivalry. Same (config, seed) → same
    state. Raises ``ValueError`` for a negative seed."""
    if seed < 0:
        raise ValueError(f"seed: expected >= 0, got {seed}")
    rng = np.random.default_rng([seed, 0, 0])
    n, k = config.num_agents, config.rivalry_slots
    layout = make_layout(config)
    starts = np.array(config.shift_starts, dtype=np.int64)
    zeros_i = np.zeros(n, dtype=np.int64)
    return WorldState(
        config=config,
        layout=layout,
        seed=int(seed),
        tick=0,
        position=spawn_positions(rng, n, config.size),
        needs=spawn_needs(rng, n),
        wallet=np.full(n, config.initial_wallet, dtype=np.float32),
        using=np.full(n, -1, dtype=np.int64),
        remaining=zeros_i.copy(),
        queued=np.full(n, -1, dtype=np.int64),
        queue_since=zeros_i.copy(),
        occupant=np.full(len(layout.obj_kind), -1, dtype=np.int64),
        rival_ids=np.full((n, k), -1, dtype=np.int64),
        rival_vals=np.zeros((n, k), dtype=np.float32),
        avoid_count=zeros_i.copy(),
        shift_start=starts[np.arange(n) % starts.size],
        arrived=np.full(n, -1, dtype=np.int64),
        lateness_counter=zeros_i.copy(),
        shifts_done=zeros_i.copy(),
        shifts_attended=zeros_i.copy(),
        wages_withheld=np.zeros(n, dtype=np.float32),
        last_action=zeros_i.copy(),
        last_success=np.ones(n, dtype=np.bool_),
        spawn_tick=zeros_i.copy(),
        reset_flag=np.ones(n, dtype=np.bool_),
    )


def is_truncated(state: WorldState) -> bool:
    """True once the world has run ``config.episode_length`` ticks (the time limit)."""
    return state.tick >= state.config.episode_length


def agent_tiles(position: IntArray, size: int) -> tuple[IntArray, IntArray, IntArray]:
    """Spatial hash of agents: per flat tile, the lowest and highest agent index standing there
    (-1 when empty) and the agent count. Two representatives are enough to find "another agent on
    my tile" without a per-tile list."""
    flat = position[:, 1] * size + position[:, 0]
    ids = np.arange(flat.size, dtype=np.int64)
    low = np.full(size * size, -1, dtype=np.int64)
    high = np.full(size * size, -1, dtype=np.int64)
    low[flat[::-1]] = ids[::-1]
    high[flat] = ids
    return low, high, np.bincount(flat, minlength=size * size)


def adjacent_partner(position: IntArray, size: int, who: IntArray | None = None) -> IntArray:
    """For each agent (or each agent listed in ``who``), another agent on its tile or a
    4-neighbour tile (N, S, E, W order), or -1.

    On its own tile the other agent is the lowest-numbered one there (the highest when that is
    the agent itself); on a neighbour tile, the lowest-numbered one."""
    ids = np.arange(position.shape[0], dtype=np.int64)
    flat = _padded_index(position, size)
    # Padded spatial hash (int32 ids, -1 border): neighbour lookups need no bounds checks.
    low = np.full((size + 2) ** 2, -1, dtype=np.int32)
    high = low.copy()
    low[flat[::-1]] = ids[::-1]
    high[flat] = ids
    if who is not None:
        ids, flat = ids[who], flat[who]
    cands = np.take(low, flat[:, None] + _neighbour_offsets(size)).astype(np.int64)
    mine = cands[:, 0] == ids
    cands[mine, 0] = high[flat[mine]]
    cands[cands[:, 0] == ids, 0] = -1
    return np.asarray(_first_present(cands), dtype=np.int64)


def object_in_reach(state: WorldState) -> IntArray:
    """The object each agent would use: the first of its tile and the 4-neighbours (N, S, E, W)
    holding one, or a free object of the same category among them if that one is taken; -1."""
    size, lay = state.config.size, state.layout
    pos = state.position
    tile = pos[:, 1] * size + pos[:, 0]
    first: IntArray = lay.reach_first[tile].astype(np.int64)
    rows = np.flatnonzero(lay.reach_choice[tile])
    if rows.size == 0:
        return first
    # Only agents with a choice of objects look further (the table answers for the rest).
    cands = np.take(
        lay.padded_grid, _padded_index(pos[rows], size)[:, None] + _neighbour_offsets(size)
    ).astype(np.int64)
    safe = np.maximum(cands, 0)
    same = lay.obj_category[safe] == lay.obj_category[first[rows]][:, None]
    free = (cands >= 0) & same & (state.occupant[safe] < 0)
    alt = cands[np.arange(rows.size), np.argmax(free, axis=1)]
    first[rows] = np.where(free.any(axis=1), alt, first[rows])
    return first


reset_world = reset  # the name exported from ``townlet``
