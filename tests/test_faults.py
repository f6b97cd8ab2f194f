"""Faults of the machine and of the user: full or read-only disks, an ``--out`` that cannot be
a directory, bad devices, seeds and thread counts, interrupted promotion changes, temporary
files of dead runs. Each ends in one line on stderr with exit 2 (bad input) or 1 (a failed
run), and nothing already on disk is lost or half-changed.

Tests run as root, who ignores permission bits, so a read-only file system is simulated by
making the file-system calls raise ``OSError(EROFS)``/``OSError(ENOSPC)``.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

import townlet._atomic as atomic
from townlet.cli import main
from townlet.errors import CheckpointError
from townlet.policy.training.services import promotion as pm
from townlet.policy.training.services import promotion_commit
from townlet.policy.training.services.promotion_commit import (
    commit_change,
    pending_path,
    recover_pending_change,
)
from townlet.policy.training.services.promotion_io import (
    load_promotion_state,
    promotion_state_to_dict,
    save_promotion_state,
)

BAD = Path(__file__).parent / "data" / "bad"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert err.count("\n") <= 1, err  # one line, never a traceback
    return code, err


# --- --out, --device, --seed, --threads ----------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["bc", "--manifest", "m.json", "--out", "{file}"],
        ["ppo", "--manifest", "m.json", "--out", "{file}"],
        ["demo", "--quick", "--out", "{file}"],
        ["anneal", "--config", "c.toml", "--out", "{file}"],
        ["demo", "--quick", "--out", "{file}/sub"],
        ["telemetry", "plot", "log.jsonl", "--out", "{file}/x.png"],
        ["telemetry", "convert", "log.jsonl", "--to", "1.0", "--output", "{dir}"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_out_that_cannot_be_written_exits_2_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    existing = tmp_path / "existing"
    existing.write_text("keep me")
    args = [a.format(file=existing, dir=tmp_path) for a in argv]
    code, err = cli(capsys, *args)
    assert code == 2
    assert "--out" in err or "--output" in err
    assert existing.read_text() == "keep me"


def test_out_on_a_read_only_file_system_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m: False if Path(p) == tmp_path else real_access(p, m)
    )
    code, err = cli(capsys, "bc", "--manifest", "m.json", "--out", str(tmp_path / "run"))
    assert code == 2 and "is not writable (read-only file system" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ppo", "--env", "CartPole-v1", "--device", "bogus"], "not a torch device"),
        (["bc", "--manifest", "m.json", "--seed", str(2**64)], "--seed must be >= 0"),
        (["bc", "--manifest", "m.json", "--threads", "1000000"], "--threads must be >= 1"),
        (["bc", "--manifest", "m.json", "--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_bad_run_options_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    pytest.importorskip("torch")
    code, err = cli(capsys, *argv)
    assert code == 2 and message in err


def test_cuda_on_a_machine_without_it_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = cli(capsys, "ppo", "--env", "CartPole-v1", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err


# --- full and read-only disks ----------------------------------------------------------------


def _failing(code: int) -> Any:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_disk_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    monkeypatch.setattr(atomic.os, "replace", _failing(code))
    with pytest.raises(OSError) as info:
        atomic.write_text_atomic(target, "new")
    assert info.value.errno == code
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left


@pytest.mark.parametrize(("code", "status"), [(errno.ENOSPC, 1), (errno.EROFS, 1)])
def test_cli_reports_a_full_disk_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    status: int,
) -> None:
    reference = Path(__file__).resolve().parents[2] / "shared" / "reference"
    logs = sorted(reference.rglob("ppo_v1_2_queue_conflict_bs1.jsonl"))
    if not logs:
        pytest.skip("reference telemetry not found")
    output = tmp_path / "out.jsonl"
    output.write_text("previous\n")
    monkeypatch.setattr(atomic.os, "fsync", _failing(code))
    exit_code, err = cli(
        capsys, "telemetry", "convert", str(logs[0]), "--to", "1.0", "--output", str(output)
    )
    assert exit_code == status
    assert err.startswith("townlet-train telemetry: failed: ") and os.strerror(code) in err
    assert output.read_text() == "previous\n"


# --- promotion: state and history together -------------------------------------------------


def _ready_state() -> pm.PromotionState:
    state = pm.init_promotion_state(required_passes=1)
    return pm.record_evaluation(state, "PASS", {"bc_accuracy": 1.0})


def _promoted(state: pm.PromotionState) -> pm.PromotionState:
    return pm.promote(state, {"checkpoint": "/x.pt", "policy_hash": "ab"}, timestamp="t")


def test_commit_writes_state_and_history_together(tmp_path: Path) -> None:
    old = _ready_state()
    save_promotion_state(tmp_path / "promotion.json", old)
    new = _promoted(old)
    commit_change(tmp_path / "promotion.json", tmp_path / "history.jsonl", new)
    assert load_promotion_state(tmp_path / "promotion.json") == new
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["state"] == promotion_state_to_dict(new)
    assert not pending_path(tmp_path / "promotion.json").exists()


def test_failed_state_write_undoes_the_history_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _ready_state()
    state_path, log = tmp_path / "promotion.json", tmp_path / "history.jsonl"
    save_promotion_state(state_path, old)
    log.write_text('{"event": "earlier"}\n')
    real = promotion_commit.write_text_atomic

    def write(path: Path, text: str) -> Path:
        if path == state_path:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(promotion_commit, "write_text_atomic", write)
    with pytest.raises(OSError):
        commit_change(state_path, log, _promoted(old))
    assert load_promotion_state(state_path) == old
    assert log.read_text() == '{"event": "earlier"}\n'
    assert not pending_path(state_path).exists()


def test_a_change_interrupted_after_its_history_line_is_rolled_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _ready_state()
    state_path, log = tmp_path / "promotion.json", tmp_path / "history.jsonl"
    save_promotion_state(state_path, old)
    real = promotion_commit.write_text_atomic

    def killed(path: Path, text: str) -> Path:
        if path == state_path:
            raise KeyboardInterrupt  # stands for kill -9: nothing after this runs
        return real(path, text)

    monkeypatch.setattr(promotion_commit, "write_text_atomic", killed)
    monkeypatch.setattr(promotion_commit, "_truncate", lambda path, size: None)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)
    new = _promoted(old)
    with pytest.raises(KeyboardInterrupt):
        commit_change(state_path, log, new)
    monkeypatch.undo()
    assert load_promotion_state(state_path) == old  # half done: state old, line written
    assert recover_pending_change(state_path, log)
    assert load_promotion_state(state_path) == new
    assert len(log.read_text().splitlines()) == 1  # the line is not written twice
    assert not recover_pending_change(state_path, log)


def test_promote_with_an_unwritable_history_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_promotion_state(tmp_path / "promotion.json", _ready_state())
    before = (tmp_path / "promotion.json").read_text()
    (tmp_path / "promotion_history.jsonl").mkdir()
    checkpoint = tmp_path / "c.pt"
    checkpoint.write_bytes(b"weights")
    code, err = cli(
        capsys, "promote", "promote", "--run", str(tmp_path), "--checkpoint", str(checkpoint)
    )
    assert code == 2 and "Is a directory" in err
    assert (tmp_path / "promotion.json").read_text() == before


# --- temporary files of dead runs ----------------------------------------------------------


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid += 1


def test_stale_temp_files_of_dead_writers_are_removed_on_the_next_save(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from townlet.policy.nn.checkpoint import save_checkpoint
    from townlet.policy.nn.network import init_params
    from townlet.policy.nn.spec import NetworkSpec

    dead = tmp_path / f".checkpoint.pt.{_dead_pid()}-abc123.tmp"
    live = tmp_path / f".checkpoint.pt.{os.getpid()}-def456.tmp"
    legacy_old = tmp_path / ".checkpoint.pt.k2j3h4g5.tmp"
    legacy_new = tmp_path / ".checkpoint.pt.a1b2c3d4.tmp"
    other = tmp_path / ".result.json.123-x.tmp"
    for path in (dead, live, legacy_old, legacy_new, other):
        path.write_bytes(b"partial")
    hour_ago = time.time() - 7200
    os.utime(legacy_old, (hour_ago, hour_ago))
    spec = NetworkSpec(feature_dim=2, action_dim=2, hidden_dim=3)
    save_checkpoint(tmp_path / "checkpoint.pt", spec=spec, params=init_params(spec, 0))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["checkpoint.pt", live.name, legacy_new.name, other.name])
    assert torch is not None


def test_flipped_byte_in_a_saved_checkpoint_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from townlet.policy.nn.checkpoint import load_checkpoint, save_checkpoint
    from townlet.policy.nn.network import init_params
    from townlet.policy.nn.spec import NetworkSpec

    spec = NetworkSpec(feature_dim=2, action_dim=2, hidden_dim=3)
    params = init_params(spec, 0)
    path = save_checkpoint(tmp_path / "c.pt", spec=spec, params=params)
    data = bytearray(path.read_bytes())
    raw = params["feature_encoder.0.weight"].numpy().tobytes()
    at = bytes(data).index(raw) + 2  # a mantissa byte of the first weight, in the stored data
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its content_sha256"):
        load_checkpoint(path)
    assert torch is not None


def test_old_checkpoint_without_a_hash_still_loads(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from townlet.policy.nn.checkpoint import load_checkpoint, save_checkpoint
    from townlet.policy.nn.network import init_params
    from townlet.policy.nn.spec import NetworkSpec

    spec = NetworkSpec(feature_dim=2, action_dim=2, hidden_dim=3)
    path = save_checkpoint(tmp_path / "c.pt", spec=spec, params=init_params(spec, 0))
    payload = torch.load(path, weights_only=True)
    header = json.loads(payload["header"])
    del header["content_sha256"]
    payload["header"] = json.dumps(header)
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.spec == spec


def test_bad_run_state_is_refused_before_telemetry_is_cut(tmp_path: Path) -> None:
    from townlet.policy.training.strategies.anneal_io import read_run_state

    (tmp_path / "telemetry.jsonl").write_text('{"epoch": 1}\n')
    (tmp_path / "run_state.json").write_text(json.dumps({"telemetry_lines": -10000}))
    with pytest.raises(CheckpointError, match="'telemetry_lines': -10000 is out of range"):
        read_run_state(tmp_path)
    assert (tmp_path / "telemetry.jsonl").read_text() == '{"epoch": 1}\n'
