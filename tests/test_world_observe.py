"""Hybrid observations: shapes, channels, feature names and values."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import pytest

from townlet.world import (
    FEATURE_NAMES,
    MAP_CHANNELS,
    ObjectSpec,
    WorldConfig,
    observe,
    reset,
    scaled_world_config,
    scripted_actions,
    step,
)
from townlet.world.observe import (
    _CELL_DIST,
    FEATURE_INDEX,
    RADIUS,
    WINDOW,
    observe_features,
    observe_maps,
)
from townlet.world.state import WorldState, agent_tiles

REFERENCE_ROOT = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "townlet-artifacts"
)


def test_shapes_dtypes_and_names() -> None:
    cfg = WorldConfig()
    maps, features = observe(reset(cfg, 0), cfg)
    assert maps.shape == (8, 4, 11, 11) and maps.dtype == np.float32
    assert features.shape == (8, 33) and features.dtype == np.float32
    assert len(FEATURE_NAMES) == 33 and MAP_CHANNELS == (
        "self",
        "agents",
        "objects",
        "reservations",
    )
    assert FEATURE_NAMES.index("rivalry_max") == 18
    assert FEATURE_NAMES.index("rivalry_avoid_count") == 19


def test_feature_names_follow_the_reference_base_order() -> None:
    sidecar = REFERENCE_ROOT / "artifacts/phase4/queue_conflict/rollout_sample_anna_001.json"
    if not sidecar.exists():
        pytest.skip(f"reference artifacts not found at {REFERENCE_ROOT}")
    names = json.loads(sidecar.read_text())["feature_names"]
    assert list(FEATURE_NAMES[:20]) == names[:20]  # the sample's first 20 are the base prefix


def test_map_channels_and_features_by_hand() -> None:
    cfg = WorldConfig(
        num_agents=3,
        objects=(
            ObjectSpec(kind="fridge", position=(5, 4)),
            ObjectSpec(kind="desk", position=(0, 0)),
        ),
    )
    state = attrs.evolve(
        reset(cfg, 0),
        position=np.array([[5, 5], [7, 5], [5, 5]]),
        occupant=np.array([0, -1]),
        using=np.array([0, -1, -1]),
        rival_ids=np.array([[1, -1, -1, -1], [-1] * 4, [-1] * 4]),
        rival_vals=np.array([[0.4, 0, 0, 0], [0] * 4, [0] * 4], dtype=np.float32),
        avoid_count=np.array([2, 0, 0]),
    )
    maps, f = observe(state)
    me = maps[0]
    assert me[0].sum() == 1 and me[0, 5, 5] == 1
    # Agent 1 is 2 east; agent 2 shares my tile.
    assert me[1, 5, 7] == 1 and me[1, 5, 5] == 1 and me[1].sum() == 2
    assert me[2, 4, 5] == 1 and me[2, 0, 0] == 1 and me[2].sum() == 2  # fridge N, desk at (0,0)
    assert me[3, 4, 5] == 1 and me[3].sum() == 1  # the fridge is held
    assert maps[1, 2, 4, 3] == 1  # agent 1 sees the fridge 2 west, 1 north
    assert f[0, FEATURE_INDEX["rivalry_max"]] == pytest.approx(0.4)
    assert f[0, FEATURE_INDEX["rivalry_avoid_count"]] == 2
    assert f[0, FEATURE_INDEX["reservation_active"]] == 1
    assert f[0, FEATURE_INDEX["nearest_agent_distance"]] == 0
    assert f[1, FEATURE_INDEX["nearest_agent_distance"]] == pytest.approx(2 / 6)
    assert f[0, FEATURE_INDEX["time_cos"]] == pytest.approx(1.0)
    assert f[:, FEATURE_INDEX["shift_pre"]].tolist() == [1, 1, 1]
    np.testing.assert_allclose(f[:, :3], state.needs)


def test_window_is_zero_outside_the_town() -> None:
    cfg = WorldConfig()
    state = attrs.evolve(reset(cfg, 0), position=np.zeros((8, 2), dtype=np.int64))
    maps, _ = observe(state)
    assert maps[0, 1:, :5, :].sum() == 0 and maps[0, 1:, :, :5].sum() == 0


def test_observe_rejects_a_foreign_config() -> None:
    with pytest.raises(ValueError, match="config"):
        observe(reset(WorldConfig(), 0), WorldConfig(size=20))


def test_observe_into_strided_out_matches_fresh_arrays() -> None:
    from townlet.world import scripted_actions, step

    cfg = WorldConfig(num_agents=6)
    state = reset(cfg, 3)
    rng = np.random.default_rng(0)
    maps_buf = np.full((6, 4, 4, 11, 11), np.nan, dtype=np.float32)  # (N, T, C, H, W)
    feats_buf = np.full((6, 4, 33), np.nan, dtype=np.float32)
    for tick in range(4):
        out = (maps_buf[:, tick], feats_buf[:, tick])
        maps, features = observe(state, out=out)
        assert maps is out[0] and features is out[1]
        fresh_maps, fresh_features = observe(state)
        assert maps.tobytes() == fresh_maps.tobytes()
        assert features.tobytes() == fresh_features.tobytes()
        state, _, _, _ = step(state, scripted_actions(state, None, rng))
    assert not np.isnan(maps_buf).any() and not np.isnan(feats_buf).any()
    # a features-only ``out`` gets fresh maps
    maps, features = observe(state, out=(None, feats_buf[:, 0]))
    assert maps.shape == (6, 4, 11, 11) and features is not None


@pytest.mark.parametrize(
    ("maps_out", "features_out", "match"),
    [
        (np.zeros((5, 4, 11, 11), np.float32), np.zeros((6, 33), np.float32), "out maps"),
        (np.zeros((6, 4, 11, 11), np.float64), np.zeros((6, 33), np.float32), "float32"),
        (np.zeros((6, 4, 11, 11), np.float32), np.zeros((6, 32), np.float32), "out features"),
        (np.zeros((6, 4, 11, 12), np.float32)[..., :11], np.zeros((6, 33), np.float32), "copy"),
    ],
)
def test_observe_rejects_bad_out(
    maps_out: np.ndarray, features_out: np.ndarray, match: str
) -> None:
    state = reset(WorldConfig(num_agents=6), 0)
    with pytest.raises(ValueError, match=match):
        observe(state, out=(maps_out, features_out))


def _maps_by_flat_take(state: WorldState) -> np.ndarray:
    """``observe_maps`` as it was before the sliding-window gather: a flat ``np.take`` per
    channel over float32 grids (the reference for the equality test below)."""
    size, lay = state.config.size, state.layout
    _, _, count = agent_tiles(state.position, size)
    grids = np.zeros((3, size + 2 * RADIUS, size + 2 * RADIUS), dtype=np.float32)
    inner = (slice(RADIUS, RADIUS + size), slice(RADIUS, RADIUS + size))
    grids[0][inner] = count.reshape(size, size)
    grids[1][inner] = lay.obj_grid >= 0
    held = lay.obj_pos[state.occupant >= 0]
    grids[2, held[:, 1] + RADIUS, held[:, 0] + RADIUS] = 1.0
    side = size + 2 * RADIUS
    offs = (np.arange(WINDOW)[:, None] * side + np.arange(WINDOW)).ravel()
    flat = (state.position[:, 1] * side + state.position[:, 0])[:, None] + offs
    n = state.position.shape[0]
    maps = np.empty((n, 4, WINDOW, WINDOW), dtype=np.float32)
    cells = maps.reshape(n, 4, WINDOW * WINDOW)
    for channel in range(3):
        np.take(grids[channel].ravel(), flat, out=cells[:, channel + 1])
    maps[:, 1, RADIUS, RADIUS] -= 1.0
    np.minimum(maps[:, 1], 1.0, out=maps[:, 1])
    maps[:, 0] = 0.0
    maps[:, 0, RADIUS, RADIUS] = 1.0
    return maps


def _window_features(maps: np.ndarray) -> np.ndarray:
    """Features 29-32 as they were computed before (one sum per channel, int64 distances)."""
    flat = maps.reshape(maps.shape[0], 4, WINDOW * WINDOW)
    cells = WINDOW * WINDOW
    dist = np.where(flat[:, 1] > 0, _CELL_DIST, RADIUS + 1).min(axis=1)
    columns = [flat[:, 1].sum(axis=1) / (cells - 1), flat[:, 2].sum(axis=1) / cells,
               flat[:, 3].sum(axis=1) / cells, dist / (RADIUS + 1)]  # fmt: skip
    return np.stack(columns, axis=1).astype(np.float32)


@pytest.mark.parametrize(("agents", "ticks"), [(8, 60), (300, 25), (2048, 3)])
def test_maps_equal_the_flat_take_gather(agents: int, ticks: int) -> None:
    state = reset(scaled_world_config(agents), 1)
    state = attrs.evolve(state, position=state.position.copy())
    state.position[:5] = state.position[5]  # a crowded tile: counts above 2
    state.position[6] = (0, 0)  # a corner: the window runs off the town
    rng = np.random.default_rng(2)
    for _ in range(ticks):
        maps = observe_maps(state)
        assert np.array_equal(maps, _maps_by_flat_take(state))
        features = observe_features(state, maps)
        assert np.array_equal(features[:, 29:], _window_features(maps))
        state, _, _, _ = step(state, scripted_actions(state, None, rng))
