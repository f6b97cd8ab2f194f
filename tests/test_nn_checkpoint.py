"""Checkpoints: round trip, spec mismatch, damaged files, no code execution on load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from townlet.errors import CheckpointError  # noqa: E402
from townlet.policy.nn.adam import AdamConfig, adam_init, adam_update  # noqa: E402
from townlet.policy.nn.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from townlet.policy.nn.network import init_params  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402

SPEC = NetworkSpec(map_shape=(1, 2, 2), feature_dim=3, action_dim=2, hidden_dim=8)


def _trained():  # type: ignore[no-untyped-def]
    params = init_params(SPEC, 0)
    grads = {k: torch.full_like(v, 0.5) for k, v in params.items()}
    return adam_update(grads, adam_init(params), params, AdamConfig())


def test_round_trip_restores_everything(tmp_path: Path) -> None:
    params, state = _trained()
    path = save_checkpoint(
        tmp_path / "sub" / "run.pt",
        spec=SPEC,
        params=params,
        adam_state=state,
        counters={"updates": 7, "epoch": 2, "lr": 3e-4},
        extra={"label": "bc", "config": {"seed": 0}},
    )
    assert path == tmp_path / "sub" / "run.pt"
    assert [p.name for p in path.parent.iterdir()] == ["run.pt"]  # no temp file left behind
    ckpt = load_checkpoint(path, expected_spec=SPEC)
    assert ckpt.spec == SPEC and ckpt.format_version == 1
    assert dict(ckpt.counters) == {"updates": 7, "epoch": 2, "lr": 3e-4}
    assert dict(ckpt.extra) == {"label": "bc", "config": {"seed": 0}}
    assert list(ckpt.params) == list(params)
    for k in params:
        assert torch.equal(ckpt.params[k], params[k])
    assert ckpt.adam_state is not None
    assert dict(ckpt.adam_state.steps) == dict.fromkeys(params, 1)
    for k in params:
        assert torch.equal(ckpt.adam_state.exp_avg[k], state.exp_avg[k])
        assert torch.equal(ckpt.adam_state.exp_avg_sq[k], state.exp_avg_sq[k])


def test_params_only_checkpoint(tmp_path: Path) -> None:
    params = init_params(SPEC, 1)
    save_checkpoint(tmp_path / "p.pt", spec=SPEC, params=params)
    ckpt = load_checkpoint(tmp_path / "p.pt")
    assert ckpt.adam_state is None and dict(ckpt.counters) == {} and dict(ckpt.extra) == {}


def test_mismatched_spec_names_both(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.pt", spec=SPEC, params=init_params(SPEC, 0))
    other = NetworkSpec(map_shape=(1, 2, 2), feature_dim=3, action_dim=5, hidden_dim=8)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "a.pt", expected_spec=other)
    message = str(info.value)
    assert "a.pt" in message and "action_dim=2" in message and "action_dim=5" in message


def test_save_rejects_params_that_do_not_fit_spec(tmp_path: Path) -> None:
    other = NetworkSpec(feature_dim=3, action_dim=2, hidden_dim=8)
    with pytest.raises(CheckpointError, match="do not match network spec"):
        save_checkpoint(tmp_path / "x.pt", spec=other, params=init_params(SPEC, 0))
    assert not (tmp_path / "x.pt").exists()


def test_save_rejects_bad_counters_and_extra(tmp_path: Path) -> None:
    params = init_params(SPEC, 0)
    with pytest.raises(CheckpointError, match="counter 'done'"):
        save_checkpoint(tmp_path / "c.pt", spec=SPEC, params=params, counters={"done": True})
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path / "c.pt", spec=SPEC, params=params, extra={"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(CheckpointError, match=r"bad\.pt: not a readable checkpoint"):
        load_checkpoint(bad)
    save_checkpoint(tmp_path / "trunc.pt", spec=SPEC, params=init_params(SPEC, 0))
    data = (tmp_path / "trunc.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trunc\.pt"):
        load_checkpoint(tmp_path / "trunc.pt")


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no 'header' string"):
        load_checkpoint(tmp_path / "plain.pt")
    torch.save({"header": json.dumps({"format": "x"})}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="header format missing"):
        load_checkpoint(tmp_path / "other.pt")
    header = {"format": "townlet-checkpoint", "format_version": 99}
    torch.save({"header": json.dumps(header)}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format_version 99 is not supported"):
        load_checkpoint(tmp_path / "future.pt")


class _Sneaky:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("this must never run",))


def test_pickled_objects_are_never_executed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save({"header": "{}", "evil": _Sneaky()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert "this must never run" not in capsys.readouterr().out
