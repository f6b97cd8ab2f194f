"""``WorldConfig``: every knob of the embedded town in one frozen record.

The defaults give a 16×16 town with 8 agents and 9 objects (2 fridges, 1 stove, 2 showers, 2 beds,
2 desks), so that objects are scarce enough for queues to form. Rates are per tick; needs live in
[0, 1]. Reward weights follow the original Townlet's ``rewards`` block where it has one
(``needs_weights``, ``survival_tick``, ``faint_penalty``, ``social.C1_chat_base``,
``social.C2_avoid_conflict``, ``clip.clip_per_tick``). The record holds only plain fields, so a
config file structures into it directly.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from townlet._config_fields import float_field, help_metadata, int_field, one_of, unit_field
from townlet._validators import ConfigFieldError

ObjectKind = Literal["fridge", "stove", "shower", "bed", "desk"]
OBJECT_KINDS: tuple[str, ...] = ("fridge", "stove", "shower", "bed", "desk")
WorldSocialStage = Literal["OFF", "C1", "C2", "C3"]
WORLD_SOCIAL_STAGES: tuple[str, ...] = ("OFF", "C1", "C2", "C3")
_MAX_SIZE = 4096  # tiles per side: a 4096 x 4096 grid of int32 is 64 MiB


def _to_pair(value: Any) -> tuple[int, int]:
    x, y = value
    return (int(x), int(y))


@attrs.frozen(kw_only=True)
class ObjectSpec:
    """One object of the town: its kind and its tile ``(x, y)`` (x grows east, y grows south)."""

    kind: ObjectKind = attrs.field(
        validator=one_of(OBJECT_KINDS), metadata=help_metadata("What the object is.")
    )
    position: tuple[int, int] = attrs.field(
        converter=_to_pair, metadata=help_metadata("Tile (x, y); x grows east, y grows south.")
    )


DEFAULT_OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec(kind="fridge", position=(2, 2)),
    ObjectSpec(kind="stove", position=(3, 2)),
    ObjectSpec(kind="fridge", position=(12, 13)),
    ObjectSpec(kind="shower", position=(13, 2)),
    ObjectSpec(kind="shower", position=(2, 12)),
    ObjectSpec(kind="bed", position=(6, 13)),
    ObjectSpec(kind="bed", position=(9, 13)),
    ObjectSpec(kind="desk", position=(7, 7)),
    ObjectSpec(kind="desk", position=(9, 7)),
)


def _check_objects(inst: WorldConfig, attribute: Any, value: Any) -> None:
    objects: tuple[ObjectSpec, ...] = inst.objects
    if not objects:
        raise ConfigFieldError("objects", "expected at least one object")
    seen: set[tuple[int, int]] = set()
    for index, obj in enumerate(objects):
        if not isinstance(obj, ObjectSpec):
            raise ConfigFieldError("objects", f"item {index}: expected an ObjectSpec, got {obj!r}")
        x, y = obj.position
        if not (0 <= x < inst.size and 0 <= y < inst.size):
            raise ConfigFieldError(
                "objects",
                f"item {index}: position {obj.position} lies outside the "
                f"{inst.size}x{inst.size} grid",
            )
        if obj.position in seen:
            raise ConfigFieldError(
                "objects", f"item {index}: position {obj.position} is taken twice"
            )
        seen.add(obj.position)


def _check_shifts(inst: WorldConfig, attribute: Any, value: Any) -> None:
    if not inst.shift_starts:
        raise ConfigFieldError("shift_starts", "expected at least one shift start")
    for start in inst.shift_starts:
        if not isinstance(start, int) or start < 0:
            raise ConfigFieldError("shift_starts", f"expected ticks >= 0, got {start!r}")
        if start + inst.shift_length > inst.day_length:
            raise ConfigFieldError(
                "shift_starts",
                f"shift {start}+{inst.shift_length} runs past day_length {inst.day_length}",
            )


@attrs.frozen(kw_only=True)
class WorldConfig:
    """The embedded town (config key ``world``).

    Grid and population: ``size`` (tiles per side), ``num_agents``, ``objects``.
    Needs (hunger, hygiene, energy) fall by ``*_decay`` per tick; an agent whose need reaches 0
    faints. Work: agent ``i`` works the shift that starts at tick-of-day
    ``shift_starts[i % len(shift_starts)]`` for ``shift_length`` ticks; arriving at a desk more than
    ``late_grace`` ticks after the start is late, not arriving within ``absent_after`` ticks is
    absent. ``episode_length`` is the world horizon in ticks (see ``is_truncated``).
    ``social_reward_stage``: OFF, C1 (chat rewards), C2/C3 (chat + conflict-avoidance rewards).
    """

    size: int = int_field(16, ge=5, le=_MAX_SIZE, help="Tiles per side of the square grid.")
    num_agents: int = int_field(8, ge=1, le=1_000_000, help="Number of agents.")
    objects: tuple[ObjectSpec, ...] = attrs.field(
        default=DEFAULT_OBJECTS,
        converter=tuple,
        validator=_check_objects,
        metadata=help_metadata("The objects of the town, at distinct tiles inside the grid."),
    )
    hunger_decay: float = unit_field(0.004, help="Hunger need lost per tick.")
    hygiene_decay: float = unit_field(0.002, help="Hygiene need lost per tick.")
    energy_decay: float = unit_field(0.003, help="Energy need lost per tick.")
    day_length: int = int_field(240, ge=2, help="Ticks per day.")
    shift_starts: tuple[int, ...] = attrs.field(
        default=(40, 140),
        converter=tuple,
        validator=_check_shifts,
        metadata=help_metadata(
            "Tick-of-day shift starts; agent i works shift i % len (must end within the day)."
        ),
    )
    shift_length: int = int_field(60, ge=1, help="Ticks per work shift.")
    late_grace: int = int_field(
        8, ge=0, help="Ticks after a shift starts that still count as on time."
    )
    absent_after: int = int_field(
        30, ge=0, help="Ticks after a shift starts after which a missing agent is absent."
    )
    episode_length: int = int_field(1000, ge=1, help="World horizon in ticks (is_truncated).")
    social_reward_stage: WorldSocialStage = attrs.field(
        default="OFF",
        validator=one_of(WORLD_SOCIAL_STAGES),
        metadata=help_metadata("OFF, C1 (chat rewards), C2/C3 (chat + conflict avoidance)."),
    )
    initial_wallet: float = float_field(
        1.0, ge=0.0, help="Money an agent starts (and respawns) with."
    )
    wage_rate: float = float_field(0.02, ge=0.0, help="Pay per tick worked at a desk on shift.")
    lateness_penalty: float = float_field(
        0.01, ge=0.0, help="Cost per tick on shift without a desk after the grace."
    )
    punctuality_bonus: float = float_field(
        0.05, ge=0.0, help="One-off reward for reaching a desk on time."
    )
    meal_cost: float = float_field(
        0.1, ge=0.0, help="Price of a fridge meal (a stove meal costs half)."
    )
    hunger_weight: float = float_field(
        1.0, ge=0.0, help="Weight of the squared hunger deficit in the reward."
    )
    hygiene_weight: float = float_field(
        0.6, ge=0.0, help="Weight of the squared hygiene deficit in the reward."
    )
    energy_weight: float = float_field(
        0.8, ge=0.0, help="Weight of the squared energy deficit in the reward."
    )
    survival_reward: float = float_field(0.002, ge=0.0, help="Reward per tick alive.")
    faint_penalty: float = float_field(
        -1.0, le=0.0, help="Added to the reward of an agent that faints (after clipping)."
    )
    reward_clip: float = float_field(
        1.0, gt=0.0, help="Per-tick reward clip to [-reward_clip, reward_clip]."
    )
    chat_reward: float = float_field(
        0.01, ge=0.0, help="Chat reward per unit of chat quality (stages C1-C3)."
    )
    avoid_conflict_reward: float = float_field(
        0.005, ge=0.0, help="Reward per rivalry avoidance (stages C2, C3)."
    )
    chat_success_rate: float = unit_field(
        0.8, help="Chat success probability, times (1 - the pair's rivalry)."
    )
    rivalry_gain: float = unit_field(
        0.3, help="Rivalry added per queue conflict, times its intensity."
    )
    rivalry_decay: float = unit_field(0.01, help="Fraction of every rivalry lost per tick.")
    rival_threshold: float = unit_field(
        0.3, help="Rivalry at which another agent counts as a rival."
    )
    rivalry_slots: int = int_field(4, ge=1, le=64, help="Strongest rivalry ties kept per agent.")


def scaled_world_config(num_agents: int, *, base: WorldConfig | None = None) -> WorldConfig:
    """A town for ``num_agents`` agents at the same density as ``base`` (default ``WorldConfig()``).

    The base town is tiled into a square of ``ceil(sqrt(num_agents / base.num_agents))`` blocks
    per side, objects included, so the agents-per-object ratio stays the same as the town grows.
    Used by the benchmark to show that the cost per agent-step does not grow with the population.
    Raises ``ValueError`` when ``num_agents < 1``.
    """
    base = base if base is not None else WorldConfig()
    if num_agents < 1:
        raise ValueError(f"num_agents: expected >= 1, got {num_agents}")
    blocks = max(1, math.ceil(math.sqrt(num_agents / base.num_agents)))
    if base.size * blocks > _MAX_SIZE:  # refused before building millions of objects
        raise ConfigFieldError(
            "num_agents",
            f"{num_agents} agents need a {base.size * blocks}-tile town "
            f"(over the {_MAX_SIZE} limit)",
        )
    objects = tuple(
        ObjectSpec(
            kind=obj.kind,
            position=(bx * base.size + obj.position[0], by * base.size + obj.position[1]),
        )
        for by in range(blocks)
        for bx in range(blocks)
        for obj in base.objects
    )
    return WorldConfig(
        **{
            **attrs.asdict(base, recurse=False),
            "size": base.size * blocks,
            "num_agents": num_agents,
            "objects": objects,
        }
    )
