"""Config records and load_config: defaults, bounds, key-path errors, TOML and YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from townlet.config import (
    AnnealStage,
    BCConfig,
    Config,
    PPOConfig,
    PromotionConfig,
    config_from_dict,
    load_config,
)
from townlet.dto.convert import from_dict, to_dict
from townlet.errors import ConfigError


def _error(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data, source="config.toml")
    return str(exc.value)


def test_defaults_follow_reference() -> None:
    cfg = Config()
    assert cfg.ppo.learning_rate == 3e-4 and cfg.ppo.clip_param == 0.2
    assert cfg.ppo.num_mini_batches == 4 and cfg.ppo.advantage_normalization is True
    assert cfg.training.anneal_accuracy_threshold == 0.9
    assert cfg.training.bc.epochs == 10 and cfg.training.bc.batch_size == 64
    assert cfg.promotion.required_passes == 2 and cfg.promotion.window_ticks == 1000
    assert config_from_dict({}) == cfg


def test_bound_message_names_file_key_value_and_range() -> None:
    assert (
        _error({"ppo": {"clip_param": 1.5}}) == "config.toml: ppo.clip_param: 1.5 is not in [0, 1]"
    )
    assert _error({"ppo": {"learning_rate": 0}}) == (
        "config.toml: ppo.learning_rate: 0.0 must be greater than 0"
    )
    assert _error({"promotion": {"required_passes": 11}}) == (
        "config.toml: promotion.required_passes: 11 is not in [1, 10]"
    )


def test_unknown_key_suggests_closest() -> None:
    assert _error({"ppo": {"learing_rate": 1e-3}}) == (
        "config.toml: ppo.learing_rate: unknown key; did you mean 'learning_rate'?"
    )
    assert "did you mean 'training'" in _error({"trainng": {}})
    assert "valid keys: seed, ppo, training, promotion" in _error({"zzz": 1})


def test_type_errors() -> None:
    assert _error({"ppo": {"num_epochs": "4"}}) == (
        "config.toml: ppo.num_epochs: expected an integer, got '4' (str)"
    )
    assert "ppo.gamma: expected a number, got 'x' (str)" in _error({"ppo": {"gamma": "x"}})
    assert "expected true or false" in _error({"ppo": {"advantage_normalization": 1}})
    assert "ppo: expected a mapping of keys, got 3 (int)" in _error({"ppo": 3})
    assert "num_epochs: expected an integer, got 4.5" in _error({"ppo": {"num_epochs": 4.5}})


def test_nested_lists_and_literals() -> None:
    message = _error({"training": {"anneal_schedule": [{"mode": "x"}, {"epochs": 0}]}})
    assert "training.anneal_schedule[0].mode: 'x' is not one of 'bc', 'ppo'" in message
    assert "training.anneal_schedule[1].epochs: 0 must be greater than or equal to 1" in message
    assert "training.social_reward_schedule[0].stage: missing required key" in _error(
        {"training": {"social_reward_schedule": [{"cycle": 1}]}}
    )


def test_all_problems_in_one_error() -> None:
    message = _error({"ppo": {"num_epochs": 4.5, "gamma": True}, "seed": "x"})
    assert message.count(";") == 2 and message.startswith("config.toml: ")


def test_python_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"clip_param: 1.5 is not in \[0, 1\]"):
        PPOConfig(clip_param=1.5)
    with pytest.raises(ConfigError, match="val_fraction"):
        BCConfig(val_fraction=1.0)
    assert PromotionConfig(allowed_alerts="starvation").allowed_alerts == ("starvation",)  # type: ignore[arg-type]


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'seed = 7\n[ppo]\nlearning_rate = 1e-3\n[training]\nsource = "anneal"\n'
        '[training.bc]\nmanifest = "data/m.json"\n'
        '[[training.anneal_schedule]]\ncycle = 0\nmode = "bc"\n'
        "[[training.anneal_schedule]]\ncycle = 1\nbc_weight = 0.5\n"
    )
    cfg = load_config(path)
    assert cfg.seed == 7 and cfg.ppo.learning_rate == 1e-3
    assert cfg.training.bc.manifest == Path("data/m.json")
    assert cfg.training.anneal_schedule == (
        AnnealStage(cycle=0, mode="bc"),
        AnnealStage(cycle=1, bc_weight=0.5),
    )


def test_yaml_file_and_exponent_floats(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "ppo:\n  learning_rate: 1e-3\n  entropy_coef: 2.5e-2\ntraining:\n  source: bc\n"
    )
    cfg = load_config(path)
    assert cfg.ppo.learning_rate == 1e-3 and cfg.ppo.entropy_coef == 0.025
    assert cfg.training.source == "bc"
    assert load_config(_write(tmp_path / "empty.yml", "")) == Config()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: config file not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML"):
        load_config(_write(tmp_path / "bad.toml", "[ppo\n"))
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML"):
        load_config(_write(tmp_path / "bad.yaml", "ppo: [1,\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path / "list.yaml", "- 1\n"))
    with pytest.raises(ConfigError, match=r"unsupported config format '\.ini'"):
        load_config(_write(tmp_path / "c.ini", ""))
    bad = _write(tmp_path / "c.yaml", "ppo:\n  clip_param: 2\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert str(exc.value) == f"{bad}: ppo.clip_param: 2.0 is not in [0, 1]"


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_unit_interval_validator(value: float) -> None:
    inside = 0.0 <= value <= 1.0
    try:
        cfg = config_from_dict({"ppo": {"gamma": value}})
    except ConfigError as exc:
        assert not inside
        assert "ppo.gamma" in str(exc) and "is not in [0, 1]" in str(exc)
    else:
        assert inside and cfg.ppo.gamma == value


@given(
    lr=st.floats(min_value=1e-9, max_value=1.0),
    epochs=st.integers(min_value=1, max_value=64),
    batches=st.integers(min_value=1, max_value=1024),
    source=st.sampled_from(["replay", "rollout", "mixed", "bc", "anneal"]),
    alerts=st.lists(st.text(max_size=5), max_size=3),
)
def test_round_trip(lr: float, epochs: int, batches: int, source: str, alerts: list[str]) -> None:
    cfg = config_from_dict(
        {
            "ppo": {"learning_rate": lr, "num_epochs": epochs, "num_mini_batches": batches},
            "training": {"source": source, "anneal_schedule": [{"cycle": 2, "mode": "bc"}]},
            "promotion": {"allowed_alerts": alerts},
        }
    )
    assert from_dict(Config, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("world", "message"),
    [
        ({"size": -1}, "c.toml: world.size: -1 is not in [5, 4096]"),
        ({"hunger_decay": 2}, "c.toml: world.hunger_decay: 2.0 is not in [0, 1]"),
        ({"social_reward_stage": "C9"}, "world.social_reward_stage: 'C9' is not one of"),
        (
            {"objects": [{"kind": "fridge", "position": [100, 2]}]},
            "world.objects: item 0: position (100, 2) lies outside the 16x16 grid",
        ),
        ({"objects": [{"kind": "frige", "position": [1, 2]}]}, "world.objects[0].kind: 'frige'"),
        ({"shift_starts": [230]}, "world.shift_starts: shift 230+60 runs past day_length 240"),
        ({"num_agent": 3}, "world.num_agent: unknown key; did you mean 'num_agents'?"),
    ],
)
def test_world_section_errors_name_the_key(world: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"world": world}, source="c.toml")
    assert message in str(exc.value)


def test_world_section_loads() -> None:
    cfg = config_from_dict({"world": {"num_agents": 4, "social_reward_stage": "C2"}})
    assert cfg.world.num_agents == 4
    assert cfg.world.social_reward_stage == "C2"
