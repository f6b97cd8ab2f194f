"""The generated configuration reference is current, and the example configs load."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

from townlet._validators import Bounds, config_error
from townlet.config import (
    AnnealStage,
    Config,
    SocialRewardScheduleEntry,
    config_from_dict,
    load_config,
)
from townlet.world.config import WorldConfig

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "configuration.md"
EXAMPLES = REPO / "docs" / "examples"


def _load_tool() -> ModuleType:
    path = REPO / "tools" / "gen_config_docs.py"
    spec = importlib.util.spec_from_file_location("gen_config_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # attrs needs the module registered to build its classes
    spec.loader.exec_module(module)
    return module


gen = _load_tool()


def test_configuration_reference_is_current() -> None:
    current = DOC.read_text(encoding="utf-8")
    expected = gen.splice(current, gen.render())
    assert current == expected, (
        "docs/configuration.md is out of date with the config records: "
        "run `python tools/gen_config_docs.py` and commit the result"
    )


def test_every_config_key_is_in_the_reference() -> None:
    text = DOC.read_text(encoding="utf-8")

    def keys(record: type, prefix: str) -> list[str]:
        hints = typing.get_type_hints(record)
        out = []
        for field in attrs.fields(record):
            key = f"{prefix}{field.name}"
            if attrs.has(hints[field.name]):
                out += keys(hints[field.name], key + ".")
            else:
                out.append(key)
        return out

    missing = [k for k in keys(Config, "") if f"| `{k}` |" not in text]
    assert not missing
    # Nested records of tuples appear as key[].field rows.
    assert "| `training.anneal_schedule[].bc_weight` | float | `1.0` | [0, 1] |" in text
    assert "| `world.objects[].kind` | str | required | fridge, stove, shower, bed, desk |" in text


def test_rows_show_type_default_bounds_and_help() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "| `ppo.clip_param` | float | `0.2` | [0, 1] | PPO surrogate clip range" in text
    assert "| `training.bc.val_fraction` | float | `0.1` | [0, 1) |" in text
    assert "| `ppo.learning_rate` | float | `0.0003` | > 0 |" in text
    assert "| `world.faint_penalty` | float | `-1.0` | ≤ 0 |" in text
    assert '| `training.source` | str | `"replay"` | replay, rollout, mixed, bc, anneal |' in text
    assert "| `training.replay_manifest` | path (optional) | unset | — |" in text


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"ge": 0.0, "le": 1.0}, "[0, 1]"),
        ({"ge": 0.0, "lt": 1.0}, "[0, 1)"),
        ({"gt": 0.0, "le": 2.5}, "(0, 2.5]"),
        ({"gt": 0.0}, "> 0"),
        ({"ge": 1}, "≥ 1"),
        ({"le": 0.0}, "≤ 0"),
        ({"lt": 1e-8}, "< 1e-08"),
        ({}, ""),
    ],
)
def test_bounds_text(kwargs: dict[str, Any], text: str) -> None:
    assert gen.bounds_text(Bounds(config_error, **kwargs)) == text


def test_type_names() -> None:
    assert gen.type_name(int) == "int"
    assert gen.type_name(Path | None) == "path (optional)"
    assert gen.type_name(tuple[str, ...]) == "list of str"
    assert gen.type_name(tuple[int, int]) == "[int, int]"
    assert gen.type_name(tuple[AnnealStage, ...]) == "list of tables"
    with pytest.raises(TypeError, match="no rendering for type"):
        gen.type_name(dict[str, int])


def test_field_without_help_is_reported() -> None:
    @attrs.frozen(kw_only=True)
    class Bare:
        """A record whose field has no help."""

        x: int = 1

    with pytest.raises(ValueError, match=r"Bare\.x has no help text"):
        gen.collect(Bare)


def test_splice_needs_markers() -> None:
    region = f"{gen.BEGIN}\nnew\n{gen.END}"
    assert gen.splice(f"a\n{gen.BEGIN}\nold\n{gen.END}\nb", region) == f"a\n{region}\nb"
    with pytest.raises(ValueError, match="markers"):
        gen.splice("no markers here", region)


def test_check_mode_reports_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(f"intro\n{gen.BEGIN}\nold\n{gen.END}\n", encoding="utf-8")
    assert gen.main(["--check", "--path", str(stale)]) == 1
    assert "run python tools/gen_config_docs.py" in capsys.readouterr().out
    assert gen.main(["--path", str(stale)]) == 0
    assert gen.main(["--check", "--path", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8").startswith("intro\n")


def test_default_objects_block_reads_back_as_the_default_town() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"Default `world\.objects`, as TOML:\n\n```toml\n(.*?)```", text, re.S)
    assert block is not None
    parsed = tomllib.loads(block.group(1))
    assert config_from_dict(parsed).world.objects == WorldConfig().objects


def test_example_configs_load_and_agree() -> None:
    toml_config = load_config(EXAMPLES / "anneal.toml")
    yaml_config = load_config(EXAMPLES / "anneal.yaml")
    assert toml_config == yaml_config
    assert toml_config != Config()
    assert toml_config.seed == 7
    assert toml_config.training.source == "anneal"
    assert toml_config.training.anneal_schedule == (
        AnnealStage(cycle=0, mode="bc", epochs=2),
        AnnealStage(cycle=1, mode="ppo", epochs=4, bc_weight=0.5),
        AnnealStage(cycle=2, mode="ppo", epochs=4, bc_weight=0.0),
    )
    assert toml_config.training.social_reward_schedule == (
        SocialRewardScheduleEntry(cycle=0, stage="OFF"),
        SocialRewardScheduleEntry(cycle=2, stage="C1"),
    )
    assert toml_config.ppo.learning_rate == 3e-4
    assert toml_config.training.bc.manifest == Path("data/bc_datasets/manifests/idle_v1.json")
    assert toml_config.world.social_reward_stage == "C2"
    assert toml_config.world.episode_length == 500
