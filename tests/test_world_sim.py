"""The town's step: determinism, purity, bounds, events, fainting, social reward stages."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from townlet.world import (
    EVENT_NAMES,
    ObjectSpec,
    WorldConfig,
    event_counts,
    events_to_dicts,
    random_actions,
    reset,
    scaled_world_config,
    scripted_actions,
    step,
)
from townlet.world.state import CHAT, MOVE_EAST, USE, WAIT, YIELD, WorldState


def _run(cfg: WorldConfig, seed: int, ticks: int, *, scripted: bool = True):  # type: ignore[no-untyped-def]
    state = reset(cfg, seed)
    rng = np.random.default_rng(seed)
    rewards, dones, events = [], [], []
    for _ in range(ticks):
        acts = scripted_actions(state, cfg, rng) if scripted else random_actions(state, rng)
        state, r, d, ev = step(state, acts)
        rewards.append(r)
        dones.append(d)
        events.append(ev)
    return state, np.array(rewards), np.array(dones), events


def _arrays(state: WorldState) -> dict[str, np.ndarray]:
    return {
        f.name: getattr(state, f.name)
        for f in attrs.fields(WorldState)
        if isinstance(getattr(state, f.name), np.ndarray)
    }


def test_same_seed_and_actions_give_the_same_trajectory() -> None:
    cfg = WorldConfig()
    a, ra, da, _ = _run(cfg, 3, 120)
    b, rb, db, _ = _run(cfg, 3, 120)
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_array_equal(da, db)
    for name, value in _arrays(a).items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)
    _c, rc, _, _ = _run(cfg, 4, 120)
    assert not np.array_equal(ra, rc)


def test_step_does_not_modify_its_inputs() -> None:
    cfg = WorldConfig()
    state, _, _, _ = _run(cfg, 0, 60)
    before = {k: v.copy() for k, v in _arrays(state).items()}
    layout_grid = state.layout.obj_grid.copy()
    acts = np.array([USE, CHAT, YIELD, MOVE_EAST, WAIT, USE, CHAT, YIELD], dtype=np.int64)
    acts_before = acts.copy()
    new, _, _, _ = step(state, acts)
    again, _, _, _ = step(state, acts)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(state, name), value, err_msg=name)
    np.testing.assert_array_equal(acts, acts_before)
    np.testing.assert_array_equal(state.layout.obj_grid, layout_grid)
    assert new is not state and new.tick == state.tick + 1
    np.testing.assert_array_equal(new.position, again.position)


def test_needs_stay_in_unit_interval_and_state_is_consistent() -> None:
    cfg = WorldConfig()
    for scripted in (True, False):
        state = reset(cfg, 1)
        rng = np.random.default_rng(1)
        for _ in range(300):
            acts = scripted_actions(state, cfg, rng) if scripted else random_actions(state, rng)
            state, _, _, _ = step(state, acts)
            assert state.needs.min() >= 0.0 and state.needs.max() <= 1.0
            assert ((state.position >= 0) & (state.position < cfg.size)).all()
            held = state.using[state.using >= 0]
            assert len(set(held.tolist())) == held.size  # one user per object
            np.testing.assert_array_equal(state.occupant[held], np.flatnonzero(state.using >= 0))
            assert (state.rival_vals >= 0).all() and (state.rival_vals <= 1).all()


def test_queue_conflicts_chats_and_named_events_occur_in_500_ticks() -> None:
    totals: dict[str, float] = {}
    names: set[str] = set()
    for seed in (0, 1):
        _, _, _, events = _run(WorldConfig(), seed, 500)
        for ev in events:
            for key, value in event_counts(ev).items():
                totals[key] = totals.get(key, 0.0) + value
            names |= {d["event"] for d in events_to_dicts(ev)}
    assert totals["queue_conflict"] >= 50
    assert 0.5 * totals["queue_conflict"] <= totals["queue_conflict_intensity_sum"]
    assert totals["chat_success"] >= 20 and totals["chat_failure"] >= 1
    assert totals["rivalry_avoid"] >= 1 and totals["shared_meal"] >= 1
    assert totals["employment_helped_when_late"] >= 1
    assert {"queue_conflict", "chat_success", "chat_failure", "shared_meal"} <= names
    assert names <= set(EVENT_NAMES)


def test_event_dicts_have_the_reference_shape() -> None:
    _, _, _, events = _run(WorldConfig(), 0, 200)
    dicts = [d for ev in events for d in events_to_dicts(ev)]
    conflict = next(d for d in dicts if d["event"] == "queue_conflict")
    assert set(conflict) == {"event", "tick", "actor", "rival", "intensity"}
    assert 0.5 <= conflict["intensity"] <= 1.0 and conflict["actor"].startswith("agent_")
    chat = next(d for d in dicts if d["event"] == "chat_success")
    assert 0.0 <= chat["quality"] <= 1.0 and {"speaker", "listener"} <= set(chat)


def test_occupied_object_makes_the_second_agent_queue_with_a_conflict() -> None:
    cfg = WorldConfig(num_agents=2, objects=(ObjectSpec(kind="shower", position=(5, 5)),))
    state = attrs.evolve(reset(cfg, 0), position=np.array([[5, 5], [5, 6]]))
    state, _, _, ev = step(state, np.array([USE, WAIT]))
    assert state.using.tolist() == [0, -1] and state.occupant.tolist() == [0]
    state, _, _, ev = step(state, np.array([USE, USE]))
    assert ev.conflict_actor.tolist() == [1] and ev.conflict_rival.tolist() == [0]
    assert state.queued.tolist() == [-1, 0]
    assert state.rival_ids[1, 0] == 0 and state.rival_ids[0, 0] == 1
    assert state.rival_vals[1, 0] == pytest.approx(cfg.rivalry_gain * ev.conflict_intensity[0])
    state, _, _, ev = step(state, np.array([USE, USE]))
    assert ev.conflict_actor.size == 0  # still waiting: no new conflict
    for _ in range(3):
        state, _, _, _ = step(state, np.array([USE, USE]))
    assert state.using.tolist() == [-1, 0]  # the shower passed to the queued agent


def test_yield_away_from_a_rival_counts_and_pays_from_stage_c2() -> None:
    base = WorldConfig(num_agents=2, objects=(ObjectSpec(kind="bed", position=(0, 0)),))
    rewards = {}
    for stage in ("C1", "C2"):
        cfg = attrs.evolve(base, social_reward_stage=stage)
        state = attrs.evolve(
            reset(cfg, 0),
            position=np.array([[5, 5], [6, 5]]),
            rival_ids=np.array([[1, -1, -1, -1], [0, -1, -1, -1]]),
            rival_vals=np.array([[0.9, 0, 0, 0], [0.9, 0, 0, 0]], dtype=np.float32),
        )
        new, r, _, ev = step(state, np.array([YIELD, WAIT]))
        assert new.position[0].tolist() == [4, 5] and new.avoid_count.tolist() == [1, 0]
        assert ev.avoid_agent.tolist() == [0] and ev.avoid_rival.tolist() == [1]
        rewards[stage] = r[0] - r[1]
    assert rewards["C2"] - rewards["C1"] == pytest.approx(base.avoid_conflict_reward, abs=1e-6)


def test_social_stage_switches_chat_rewards_on() -> None:
    totals = {}
    for stage in ("OFF", "C1", "C3"):
        cfg = WorldConfig(num_agents=2, social_reward_stage=stage, chat_success_rate=1.0)
        state = attrs.evolve(reset(cfg, 0), position=np.array([[5, 5], [5, 6]]))
        _, r, _, ev = step(state, np.array([CHAT, WAIT]))
        assert ev.chat_ok.tolist() == [True]
        totals[stage] = (r, float(ev.chat_quality[0]))
    off, c1, c3 = totals["OFF"][0], totals["C1"][0], totals["C3"][0]
    expected = WorldConfig().chat_reward * totals["C1"][1]
    np.testing.assert_allclose(c1 - off, [expected, expected], atol=1e-6)
    np.testing.assert_allclose(c3, c1, atol=1e-7)


def test_fainting_ends_the_episode_and_respawns() -> None:
    cfg = WorldConfig(num_agents=3)
    state = reset(cfg, 0)
    needs = state.needs.copy()
    needs[1] = [0.001, 0.9, 0.9]
    state = attrs.evolve(state, needs=needs, avoid_count=np.array([0, 5, 0]))
    new, rewards, dones, ev = step(state, np.zeros(3, dtype=np.int64))
    assert dones.tolist() == [False, True, False] and ev.fainted.tolist() == dones.tolist()
    assert rewards[1] <= cfg.faint_penalty < rewards[0]
    assert new.needs[1].min() >= 0.6 and new.avoid_count[1] == 0
    assert new.reset_flag.tolist() == [False, True, False] and new.spawn_tick[1] == 1
    later, _, _, _ = step(new, np.zeros(3, dtype=np.int64))
    assert not later.reset_flag.any()


def test_random_agents_faint_within_500_ticks() -> None:
    _, _, dones, _ = _run(WorldConfig(), 0, 500, scripted=False)
    assert dones.sum() >= 4


def test_bad_actions_raise() -> None:
    state = reset(WorldConfig(), 0)
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        step(state, np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"ids in \[0, 7\]"):
        step(state, np.full(8, 9))
    with pytest.raises(ValueError, match="seed"):
        reset(WorldConfig(), -1)


def test_config_validators_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"objects: item 0: position \(9, 1\) lies outside"):
        WorldConfig(size=8, objects=(ObjectSpec(kind="bed", position=(9, 1)),))
    with pytest.raises(ValueError, match="taken twice"):
        WorldConfig(objects=(ObjectSpec(kind="bed", position=(1, 1)),) * 2)
    with pytest.raises(ValueError, match="shift_starts"):
        WorldConfig(day_length=100, shift_starts=(80,), shift_length=30)
    with pytest.raises(ValueError, match="social_reward_stage"):
        WorldConfig(social_reward_stage="C4")  # type: ignore[arg-type]


def test_scaled_config_keeps_density() -> None:
    cfg = scaled_world_config(128)
    assert cfg.size == 64 and cfg.num_agents == 128 and len(cfg.objects) == 16 * 9
    assert cfg.objects[9].position == (16 + 2, 2)
