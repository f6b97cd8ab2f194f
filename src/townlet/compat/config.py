"""Reading a reference ``SimulationConfig`` YAML as a townlet :class:`~townlet.config.Config`.

The reference's config describes its whole simulation (``features``, ``rewards``, ``economy``,
``affordances``, ``telemetry``, …); townlet's holds the training (``seed``, ``ppo``,
``training``, ``promotion``) and its own town (``world``). :func:`load_reference_config` keeps
what means the same here and drops the rest with one warning that lists it:

* ``ppo.*`` and ``training.*``: the same keys (a training key townlet lacks, e.g.
  ``anneal_enable_policy_blend``, is dropped);
* ``stability.promotion.required_passes`` → ``promotion.required_passes``;
* ``features.stages.social_rewards`` → ``world.social_reward_stage``;
* ``seed``, ``promotion`` and ``world`` keys townlet has are kept; other ``world`` keys
  (``grid_size``, ``weather_seed``, …) describe the reference's world and are dropped.

A townlet config reads unchanged (nothing to drop, no warning). Values are then checked as by
:func:`~townlet.config.load_config` (``ConfigError`` naming the file and the key).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from townlet._config_io import parse_config_file
from townlet.config import Config, PPOConfig, PromotionConfig, TrainingConfig, config_from_dict
from townlet.world import WorldConfig


class ReferenceConfigWarning(UserWarning):
    """Keys of a reference config that have no meaning in townlet were dropped."""


def _known(
    section: Mapping[str, Any], record: type, prefix: str, dropped: list[str]
) -> dict[str, Any]:
    names = {field.name for field in attrs.fields(record)}
    dropped.extend(f"{prefix}.{key}" for key in section if key not in names)
    return {key: value for key, value in section.items() if key in names}


def _nested(data: Mapping[str, Any], *keys: str) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def reference_config_dict(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The townlet config mapping of a parsed reference (or townlet) config, and the dotted
    keys dropped from it (see the module docstring)."""
    out: dict[str, Any] = {}
    dropped: list[str] = []
    sections = {"ppo": PPOConfig, "training": TrainingConfig, "promotion": PromotionConfig}
    for name, value in data.items():
        if name == "seed":
            out["seed"] = value
        elif name in sections and isinstance(value, Mapping):
            out[name] = _known(value, sections[name], name, dropped)
        elif name == "world" and isinstance(value, Mapping):
            out["world"] = _known(value, WorldConfig, "world", dropped)
        elif name not in ("stability", "features") or not isinstance(value, Mapping):
            dropped.append(name)
    passes = _nested(data, "stability", "promotion", "required_passes")
    if passes is not None:
        out.setdefault("promotion", {})["required_passes"] = passes
    stage = _nested(data, "features", "stages", "social_rewards")
    if stage is not None:
        out.setdefault("world", {})["social_reward_stage"] = stage
    mapped = {"stability.promotion.required_passes", "features.stages.social_rewards"}
    for name in ("stability", "features"):
        if isinstance(data.get(name), Mapping):
            dropped.extend(k for k in _leaves(data[name], name) if k not in mapped)
    return out, dropped


def _leaves(data: Mapping[str, Any], prefix: str) -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        name = f"{prefix}.{key}"
        out.extend(_leaves(value, name) if isinstance(value, Mapping) else [name])
    return out


def load_reference_config(path: str | os.PathLike[str]) -> Config:
    """A :class:`Config` from a reference (or townlet) TOML/YAML config file; one
    :class:`ReferenceConfigWarning` lists the keys dropped. Raises ``ConfigError`` for an
    unreadable file or a bad value of a kept key."""
    source = Path(path)
    data, dropped = reference_config_dict(parse_config_file(source))
    if dropped:
        warnings.warn(
            f"{source}: reference config keys with no townlet meaning were dropped: "
            + ", ".join(dropped),
            ReferenceConfigWarning,
            stacklevel=2,
        )
    return config_from_dict(data, source=str(source))
