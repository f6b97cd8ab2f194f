"""The world's faster code paths give exactly what the formulas they replaced gave (#16).

Each ``_old_*`` function below is the implementation as it was before the speed work, kept here
as the reference: the new code must agree with it element for element on random towns (small
grids, so that edge and corner tiles are common), crowded tiles, empty tiles and random
occupancy and rivalry.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pytest

from townlet.world import ObjectSpec, WorldConfig, observe, reset
from townlet.world.config import OBJECT_KINDS
from townlet.world.dynamics import move_and_yield
from townlet.world.observe import observe_features, observe_maps
from townlet.world.rivalry import (
    FORGET_BELOW,
    _insert_new,
    add_rivalry,
    rivalry_between,
    strongest_rival,
)
from townlet.world.scripted import CHAT_PROB, CRITICAL, HUNGRY, WORK_LEAD, scripted_actions
from townlet.world.state import (
    ACTION_DELTAS,
    CHAT,
    MOVE_EAST,
    MOVE_NORTH,
    MOVE_SOUTH,
    MOVE_WEST,
    NEAR_RADIUS,
    NEAR_SLOTS,
    NUM_ACTIONS,
    NUM_CATEGORIES,
    USE,
    WAIT,
    WORK,
    YIELD,
    WorldState,
    adjacent_partner,
    agent_tiles,
    near_table,
    nearest_table,
    object_in_reach,
)


def _old_adjacent_partner(position: np.ndarray, size: int) -> np.ndarray:
    low, high, _ = agent_tiles(position, size)
    ids = np.arange(position.shape[0], dtype=np.int64)
    flat = position[:, 1] * size + position[:, 0]
    here = np.where(low[flat] != ids, low[flat], high[flat])
    here = np.where(here != ids, here, -1)
    cands = [here]
    for dx, dy in ((0, -1), (0, 1), (1, 0), (-1, 0)):
        x, y = position[:, 0] + dx, position[:, 1] + dy
        inside = (x >= 0) & (x < size) & (y >= 0) & (y < size)
        tile = np.clip(y, 0, size - 1) * size + np.clip(x, 0, size - 1)
        cands.append(np.where(inside, low[tile], -1))
    stack = np.stack(cands, axis=1)
    first = np.argmax(stack >= 0, axis=1)
    return np.asarray(stack[ids, first], dtype=np.int64)


def _old_object_in_reach(state: WorldState) -> np.ndarray:
    size, lay = state.config.size, state.layout
    x, y = state.position[:, 0], state.position[:, 1]
    stack = [lay.obj_grid[y, x]]
    for dx, dy in ((0, -1), (0, 1), (1, 0), (-1, 0)):
        nx, ny = x + dx, y + dy
        inside = (nx >= 0) & (nx < size) & (ny >= 0) & (ny < size)
        tile = lay.obj_grid[np.clip(ny, 0, size - 1), np.clip(nx, 0, size - 1)]
        stack.append(np.where(inside, tile, -1))
    cands = np.stack(stack, axis=1)
    rows = np.arange(x.size)
    first = cands[rows, np.argmax(cands >= 0, axis=1)]
    safe = np.maximum(cands, 0)
    same = lay.obj_category[safe] == lay.obj_category[np.maximum(first, 0)][:, None]
    free = (cands >= 0) & same & (state.occupant[safe] < 0)
    alt = cands[rows, np.argmax(free, axis=1)]
    return np.asarray(np.where(free.any(axis=1), alt, first), dtype=np.int64)


def _old_near(pos: np.ndarray, category: np.ndarray) -> np.ndarray:
    near = np.full((len(category), NEAR_SLOTS), -1, dtype=np.int64)
    for m in range(len(category)):
        dist = np.abs(pos - pos[m]).sum(axis=1)
        mates = np.flatnonzero((dist <= NEAR_RADIUS) & (category == category[m]))
        mates = mates[mates != m][:NEAR_SLOTS]
        near[m, : mates.size] = mates
    return near


def _old_nearest(obj_pos: np.ndarray, obj_category: np.ndarray, size: int) -> np.ndarray:
    table = np.full((NUM_CATEGORIES, size, size), -1, dtype=np.int64)
    for cat in range(NUM_CATEGORIES):
        grid = table[cat]
        ids = np.flatnonzero(obj_category == cat)
        if ids.size == 0:
            continue
        grid[obj_pos[ids, 1], obj_pos[ids, 0]] = ids
        while (grid < 0).any():
            padded = np.pad(grid, 1, constant_values=-1)
            for shifted in (
                padded[:-2, 1:-1],
                padded[2:, 1:-1],
                padded[1:-1, 2:],
                padded[1:-1, :-2],
            ):
                fill = (grid < 0) & (shifted >= 0)
                grid[fill] = shifted[fill]
    return table


def _old_move(state: WorldState, acts: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The position and parts of the old ``move_and_yield`` (``_release`` is unchanged)."""
    cfg = state.config
    movers = (acts >= MOVE_NORTH) & (acts <= MOVE_WEST)
    yields = acts == YIELD
    rival, strength = strongest_rival(state.rival_ids, state.rival_vals)
    diff = state.position - state.position[np.maximum(rival, 0)]
    close = np.abs(diff).max(axis=1) <= 2
    near = np.asarray(yields & (rival >= 0) & (strength >= cfg.rival_threshold) & close)
    sign = np.sign(diff)
    along_x = np.abs(diff[:, 0]) >= np.abs(diff[:, 1])
    away = np.where(
        along_x[:, None],
        np.stack([np.where(sign[:, 0] == 0, 1, sign[:, 0]), np.zeros_like(rival)], axis=1),
        np.stack([np.zeros_like(rival), sign[:, 1]], axis=1),
    )
    delta = ACTION_DELTAS[acts] + np.where(near[:, None], away, 0)
    target = state.position + delta
    inside = np.asarray(((target >= 0) & (target < cfg.size)).all(axis=1), dtype=np.bool_)
    avoid = np.flatnonzero(near)
    position = np.where(inside[:, None], target, state.position)
    return position, {
        "move_ok": ~(movers & ~inside),
        "avoided": near,
        "avoid_agent": avoid,
        "avoid_rival": rival[avoid],
        "avoid_count": state.avoid_count + near,
    }


def _old_scripted(state: WorldState, rng: np.random.Generator) -> np.ndarray:
    """``scripted_actions`` as it was (whole-population rivalry lookups, axis reductions)."""
    cfg, lay = state.config, state.layout
    n = state.needs.shape[0]
    ids = np.arange(n)
    x, y = state.position[:, 0], state.position[:, 1]
    tod = (state.tick + 1) % cfg.day_length
    desk = lay.nearest[WORK, y, x]
    walk = np.abs(lay.obj_pos[np.maximum(desk, 0)] - state.position).sum(axis=1)
    until = (state.shift_start - tod) % cfg.day_length
    during = (tod >= state.shift_start) & (tod < state.shift_start + cfg.shift_length - 1)
    lowest = state.needs.min(axis=1)
    work = (during | (until <= walk + WORK_LEAD)) & (lowest >= CRITICAL) & (desk >= 0)
    goal = np.where(work, WORK, np.where(lowest < HUNGRY, np.argmin(state.needs, axis=1), -1))
    target = lay.nearest[np.maximum(goal, 0), y, x]
    reach = _old_object_in_reach(state)
    here = (reach >= 0) & (lay.obj_category[np.maximum(reach, 0)] == goal)
    on_tile = (lay.obj_pos[np.maximum(target, 0)] == state.position).all(axis=1)
    here &= on_tile | (state.occupant[np.maximum(reach, 0)] < 0)
    diff = lay.obj_pos[np.maximum(target, 0)] - state.position
    towards = np.where(
        np.abs(diff[:, 0]) >= np.abs(diff[:, 1]),
        np.where(diff[:, 0] > 0, MOVE_EAST, MOVE_WEST),
        np.where(diff[:, 1] > 0, MOVE_SOUTH, MOVE_NORTH),
    )
    act = np.where(goal < 0, WAIT, np.where(here, USE, towards))
    act = np.where((goal >= 0) & (target < 0), WAIT, act)
    partner = _old_adjacent_partner(state.position, cfg.size)
    friendly = rivalry_between(state.rival_ids, state.rival_vals, ids, partner)
    chatty = (goal < 0) & (partner >= 0) & (friendly < cfg.rival_threshold)
    act = np.where(chatty & (rng.random(n) < CHAT_PROB), CHAT, act)
    queued = state.queued >= 0
    holder = state.occupant[np.maximum(state.queued, 0)]
    rivalry = rivalry_between(state.rival_ids, state.rival_vals, ids, holder)
    polite = queued & (holder >= 0) & (rivalry >= cfg.rival_threshold)
    polite &= state.needs.min(axis=1) >= CRITICAL
    act = np.where(queued, np.where(polite, YIELD, USE), act)
    return np.where(state.using >= 0, USE, act).astype(np.int64)


def _random_town(rng: np.random.Generator) -> WorldState:
    """A random small town: random objects (edge tiles common), agents crowded on a few tiles
    and scattered, random holders and rivalry slots."""
    size = int(rng.integers(5, 12))
    tiles = rng.choice(size * size, size=int(rng.integers(1, size * size // 2)), replace=False)
    objects = tuple(
        ObjectSpec(kind=OBJECT_KINDS[int(rng.integers(len(OBJECT_KINDS)))],
                   position=(int(t % size), int(t // size)))
        for t in tiles
    )  # fmt: skip
    n = int(rng.integers(1, size * size))
    cfg = WorldConfig(size=size, num_agents=n, objects=objects, rivalry_slots=3)
    state = reset(cfg, int(rng.integers(1000)))
    position = rng.integers(0, size, size=(n, 2))
    crowd = rng.integers(0, n, size=n // 3)
    position[crowd] = position[crowd[:1]]  # several agents on one tile
    position[rng.integers(0, n, size=n // 4)] = rng.choice([0, size - 1], size=2)  # a corner
    occupant = np.where(rng.random(len(objects)) < 0.5, rng.integers(0, n, len(objects)), -1)
    ids = rng.integers(-1, n, size=(n, 3))
    vals = np.where(ids >= 0, rng.random((n, 3)), 0.0).astype(np.float32)
    return attrs.evolve(state, position=position, occupant=occupant, rival_ids=ids, rival_vals=vals)


@pytest.mark.parametrize("seed", range(40))
def test_object_in_reach_and_adjacent_partner_equal_the_old_formulas(seed: int) -> None:
    state = _random_town(np.random.default_rng(seed))
    assert np.array_equal(object_in_reach(state), _old_object_in_reach(state))
    size = state.config.size
    partners = _old_adjacent_partner(state.position, size)
    assert np.array_equal(adjacent_partner(state.position, size), partners)
    who = np.flatnonzero(np.random.default_rng(seed).random(state.position.shape[0]) < 0.5)
    assert np.array_equal(adjacent_partner(state.position, size, who), partners[who])


def test_object_in_reach_covers_a_taken_first_choice_with_a_free_neighbour() -> None:
    cfg = WorldConfig(
        objects=(ObjectSpec(kind="fridge", position=(0, 0)),
                 ObjectSpec(kind="stove", position=(1, 0)),
                 ObjectSpec(kind="bed", position=(0, 1))),
        num_agents=3,
    )  # fmt: skip
    state = attrs.evolve(
        reset(cfg, 0),
        position=np.array([[0, 0], [1, 0], [5, 5]]),
        occupant=np.array([2, -1, -1]),  # the fridge is taken, the stove next to it is free
    )
    assert object_in_reach(state).tolist() == [1, 1, -1]
    assert _old_object_in_reach(state).tolist() == [1, 1, -1]


@pytest.mark.parametrize("seed", range(20))
def test_near_table_equals_the_pass_over_all_objects(seed: int) -> None:
    state = _random_town(np.random.default_rng(seed))
    lay = state.layout
    assert np.array_equal(lay.obj_near, _old_near(lay.obj_pos, lay.obj_category))
    assert np.array_equal(near_table(lay.obj_pos, lay.obj_category, lay.obj_grid), lay.obj_near)


@pytest.mark.parametrize("seed", range(20))
def test_nearest_table_equals_the_padded_flooding(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(5, 30))
    count = int(rng.integers(1, 12))
    tiles = rng.choice(size * size, size=count, replace=False)
    pos = np.stack([tiles % size, tiles // size], axis=1)
    category = rng.integers(0, NUM_CATEGORIES, count)  # some categories may have no object
    table = nearest_table(pos, category, size)
    assert np.array_equal(table, _old_nearest(pos, category, size))


def test_near_table_keeps_the_lowest_ids_when_more_than_the_slots_are_near() -> None:
    spots = [(x, y) for x in range(5) for y in range(5) if abs(x - 2) + abs(y - 2) <= 2]
    objects = tuple(ObjectSpec(kind="desk", position=p) for p in reversed(spots))
    lay = reset(WorldConfig(objects=objects), 0).layout
    assert len(spots) - 1 > NEAR_SLOTS
    assert np.array_equal(lay.obj_near, _old_near(lay.obj_pos, lay.obj_category))


def test_move_and_yield_equals_the_old_formula() -> None:
    avoided = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        state = _random_town(rng)
        state = attrs.evolve(state, config=attrs.evolve(state.config, rival_threshold=0.3))
        n = state.position.shape[0]
        acts = np.where(rng.random(n) < 0.5, YIELD, rng.integers(0, NUM_ACTIONS, n))
        new, parts = move_and_yield(state, acts)
        position, old = _old_move(state, acts)
        assert np.array_equal(new.position, position)
        assert np.array_equal(new.avoid_count, old.pop("avoid_count"))
        for key, value in old.items():
            assert np.array_equal(parts[key], value), key
            assert parts[key].dtype == value.dtype, key
        avoided += old["avoid_agent"].size
    assert avoided > 40  # the step away from a rival was exercised, not just plain moves


@pytest.mark.parametrize("seed", range(20))
def test_observe_equals_maps_then_features(seed: int) -> None:
    state = _random_town(np.random.default_rng(seed))
    maps, features = observe(state)
    assert np.array_equal(maps, observe_maps(state))
    assert np.array_equal(features, observe_features(state, maps))


@pytest.mark.parametrize("seed", range(30))
def test_scripted_actions_equal_the_old_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    state = _random_town(rng)
    n = state.position.shape[0]
    objects = state.occupant.size
    state = attrs.evolve(
        state,
        config=attrs.evolve(state.config, rival_threshold=0.3),
        tick=int(rng.integers(0, 500)),
        needs=rng.random((n, 3)).astype(np.float32),
        queued=np.where(rng.random(n) < 0.3, rng.integers(0, objects, n), -1),
        using=np.where(rng.random(n) < 0.1, rng.integers(0, objects, n), -1),
    )
    # Make the holders of awaited objects and the chat partners rivals, weak or strong.
    ids = state.rival_ids.copy()
    holder = state.occupant[np.maximum(state.queued, 0)]
    partner = _old_adjacent_partner(state.position, state.config.size)
    ids[:, 0] = np.where(rng.random(n) < 0.7, holder, ids[:, 0])
    ids[:, 1] = np.where(rng.random(n) < 0.7, partner, ids[:, 1])
    vals = np.where(ids >= 0, rng.random(ids.shape), 0.0).astype(np.float32)
    state = attrs.evolve(state, rival_ids=ids, rival_vals=vals)
    new = scripted_actions(state, None, np.random.default_rng(seed))
    old = _old_scripted(state, np.random.default_rng(seed))
    assert np.array_equal(new, old)
    assert new.dtype == old.dtype


@pytest.mark.parametrize("seed", range(30))
def test_add_rivalry_forgets_exactly_like_the_masked_assignments(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 40)), int(rng.integers(1, 5))
    ids = rng.integers(-1, n, size=(n, k))
    # Values around the forget threshold and the bounds, signed zeros and a NaN.
    pool = np.array([0.0, -0.0, FORGET_BELOW, 0.009, 0.5, 1.0, 1.5, -0.2, np.nan], np.float32)
    vals = np.where(rng.random((n, k)) < 0.5, rng.choice(pool, (n, k)), rng.random((n, k)))
    vals = vals.astype(np.float32)
    m = int(rng.integers(0, 3 * n))
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    inc = rng.choice(np.array([-0.05, 0.05, 0.3, -1.0, 0.004], np.float32), m)
    new_ids, new_vals = add_rivalry(ids, vals, a, b, inc)
    old_ids, old_vals = _adds_only(ids, vals, a, b, inc)
    if m:  # with nothing to add, add_rivalry returns copies as given
        old_ids, old_vals = _old_forget(old_ids, old_vals)
    assert np.array_equal(new_ids, old_ids)
    assert np.array_equal(new_vals, old_vals, equal_nan=True)
    assert np.array_equal(np.signbit(new_vals), np.signbit(old_vals))


def _adds_only(
    ids: np.ndarray, vals: np.ndarray, a: np.ndarray, b: np.ndarray, inc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The first half of ``add_rivalry`` (existing ties, then new ones), unchanged by #16."""
    ids, vals = ids.copy(), vals.copy()
    if a.size == 0:
        return ids, vals
    match = ids[a] == b[:, None]
    has = match.any(axis=1)
    if has.any():
        np.add.at(vals, (a[has], np.argmax(match[has], axis=1)), inc[has].astype(np.float32))
    new = ~has & (inc > 0)
    if new.any():
        _insert_new(ids, vals, a[new], b[new], inc[new].astype(np.float32))
    return ids, vals


def _old_forget(ids: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    np.clip(vals, 0.0, 1.0, out=vals)
    gone = vals < FORGET_BELOW
    ids[gone] = -1
    vals[gone] = 0.0
    return ids, vals
