"""The embedded town: a small multi-agent world in numpy, as pure functions.

``reset(config, seed) -> WorldState``; ``step(state, actions, rng=None) -> (state, rewards, dones,
events)``; ``observe(state, config) -> (maps, features)``; ``scripted_actions(state, config, rng)``
for the expert policy. Everything is vectorised over agents; see docs/world.md.
"""

from __future__ import annotations

from townlet.world.config import ObjectSpec, WorldConfig, scaled_world_config
from townlet.world.events import EVENT_NAMES, Events, event_counts, events_to_dicts
from townlet.world.observe import FEATURE_NAMES, MAP_CHANNELS, observe
from townlet.world.scripted import random_actions, scripted_actions
from townlet.world.simulate import step
from townlet.world.state import ACTION_NAMES, NUM_ACTIONS, WorldState, is_truncated, reset

__all__ = [
    "ACTION_NAMES",
    "EVENT_NAMES",
    "FEATURE_NAMES",
    "MAP_CHANNELS",
    "NUM_ACTIONS",
    "Events",
    "ObjectSpec",
    "WorldConfig",
    "WorldState",
    "event_counts",
    "events_to_dicts",
    "is_truncated",
    "observe",
    "random_actions",
    "reset",
    "scaled_world_config",
    "scripted_actions",
    "step",
]
