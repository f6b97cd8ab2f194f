"""The converter's hooks: strict scalars, Path, tuples, Literal, nested error paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import attrs
import pytest

from townlet.config import BCConfig, PromotionConfig, TrainingConfig
from townlet.dto.convert import converter, from_dict, from_json, to_dict, to_json
from townlet.errors import ConfigError, DTOValidationError


@attrs.frozen(kw_only=True)
class _Leaf:
    mode: Literal["a", "b"] = "a"
    count: int = 0
    ratio: float = 0.0
    flag: bool = False
    name: str = ""


@attrs.frozen(kw_only=True)
class _Tree:
    leaves: tuple[_Leaf, ...] = ()
    where: Path | None = None


def test_strict_scalars() -> None:
    assert converter.structure(4.0, int) == 4 and converter.structure(3, float) == 3.0
    for value, tp in [("4", int), (4.5, int), (True, int), ("1.0", float), (True, float)]:
        with pytest.raises(TypeError):
            converter.structure(value, tp)
    with pytest.raises(TypeError, match="expected true or false"):
        converter.structure(1, bool)
    with pytest.raises(TypeError, match="expected a string"):
        converter.structure(1, str)


def test_path_and_tuple_round_trip() -> None:
    tree = _Tree(leaves=(_Leaf(mode="b", count=2),), where=Path("a/b.json"))
    data = to_dict(tree)
    assert data == {
        "leaves": [{"mode": "b", "count": 2, "ratio": 0.0, "flag": False, "name": ""}],
        "where": "a/b.json",
    }
    assert from_dict(_Tree, json.loads(json.dumps(data))) == tree
    assert from_json(_Tree, to_json(tree)) == tree


def test_nested_error_paths() -> None:
    with pytest.raises(DTOValidationError) as exc:
        from_dict(_Tree, {"leaves": [{}, {"mode": "c", "count": "x"}], "where": 3})
    message = str(exc.value)
    assert message.startswith("_Tree: ")
    assert "leaves[1].mode: 'c' is not one of 'a', 'b'" in message
    assert "leaves[1].count: expected an integer, got 'x' (str)" in message
    assert "where: expected a path string, got 3 (int)" in message
    with pytest.raises(DTOValidationError, match="leaves: expected a list, got 'ab'"):
        from_dict(_Tree, {"leaves": "ab"})


def test_error_type_and_context() -> None:
    with pytest.raises(ConfigError, match=r"^x\.toml: device: expected a string"):
        from_dict(BCConfig, {"device": 1}, error=ConfigError, context="x.toml")


def test_bare_string_becomes_one_tuple() -> None:
    assert from_dict(PromotionConfig, {"allowed_alerts": "hunger"}).allowed_alerts == ("hunger",)


def test_literal_none_allowed_for_optional() -> None:
    cfg = from_dict(TrainingConfig, {"social_reward_stage_override": None})
    assert cfg.social_reward_stage_override is None
    assert from_dict(TrainingConfig, {"social_reward_stage_override": "C2"}) == TrainingConfig(
        social_reward_stage_override="C2"
    )


def test_to_dict_rejects_non_records() -> None:
    with pytest.raises(TypeError, match="attrs record"):
        to_dict(3)
    with pytest.raises(DTOValidationError, match="invalid JSON"):
        from_json(_Tree, "{")
