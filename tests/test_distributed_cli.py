"""The command line under torchrun: ``python -m townlet``, option names that pass through
torchrun, refused commands, and a two-rank sharded capture into one directory.

Two-process runs use ``torchrun --standalone`` (a free port of its own) on loopback with gloo,
each bounded by a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from townlet.cli import build_parser, main
from townlet.cli._launch import DISTRIBUTED_COMMANDS
from townlet.policy.replay import ReplayDataset, ReplayDatasetConfig

TORCHRUN = Path(sys.executable).with_name("torchrun")
# torchrun's own parser takes these as abbreviations of its options; each has an alias.
CLASHING = {("ppo", "--log"): "--telemetry-log"}


def _options(parser: argparse.ArgumentParser, command: str = "") -> Iterator[tuple[str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, command or name)
        else:
            yield from ((command, option) for option in action.option_strings)


def _passes_through_torchrun(command: str, option: str) -> bool:
    from torch.distributed.run import get_args_parser

    argv = ["--standalone", "--nproc-per-node", "2", "-m", "townlet", command, option, "1"]
    argv = [a for a in argv if a]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parsed = get_args_parser().parse_args(argv)
    except SystemExit:
        return False
    return bool(parsed.training_script_args == argv[5:])


def test_every_option_reaches_townlet_through_torchrun_or_has_an_alias_that_does() -> None:
    pytest.importorskip("torch")
    parser = build_parser()
    # The commands that run under torchrun (the others are refused there).
    options = {o for o in _options(parser) if o[0] in DISTRIBUTED_COMMANDS or not o[0]}
    clashing = {opt for opt in options if not _passes_through_torchrun(*opt)}
    assert clashing == set(CLASHING)
    for (command, option), alias in CLASHING.items():
        assert (command, alias) in options and _passes_through_torchrun(command, alias)
        sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        dests = {a.dest for a in sub._actions if {option, alias} & set(a.option_strings)}
        assert len(dests) == 1  # the alias is the same option


def test_python_m_townlet_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "townlet", "capture", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: townlet-train capture")


def test_a_command_that_does_not_shard_is_refused_with_several_processes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["telemetry", "validate", str(tmp_path / "t.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("townlet-train telemetry: error: does not run under torchrun with 2")


def test_a_bad_rank_variable_is_a_one_line_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    code = main(["capture", "--ticks", "2", "--out", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "environment variable WORLD_SIZE must be an int (set by torchrun)" in err


def torchrun(
    args: list[str], *, nproc: int = 2, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node N -m townlet ARGS`` (one thread per rank)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [str(TORCHRUN), "--standalone", f"--nproc-per-node={nproc}", "-m", "townlet"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_two_rank_capture_writes_one_directory_whose_first_rank_is_the_one_process_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    args = ["capture", "--agents", "3", "--ticks", "12", "--seed", "4", "--quiet"]
    done = torchrun([*args, "--out", str(tmp_path / "two")])
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # one JSON document: rank 0 alone prints
    assert (summary["agents"], summary["frames"], summary["ranks"]) == (6, 72, 2)
    assert summary["seed"] == 4
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one_summary = json.loads(capsys.readouterr().out)
    two, one = tmp_path / "two", tmp_path / "one"
    manifest = json.loads((two / "rollout_sample_manifest.json").read_text())
    assert [e["sample"] for e in manifest] == [
        f"rollout_sample_agent_{i % 3}_{i + 1:03d}.npz" for i in range(6)
    ]
    for entry in json.loads((one / "rollout_sample_manifest.json").read_text()):
        # The sidecars are the same bytes; the npz files the same arrays (the one-process
        # command deflates its maps in chunks, with the codec of townlet.policy.replay.deflate).
        assert (two / entry["meta"]).read_bytes() == (one / entry["meta"]).read_bytes()
        with np.load(two / entry["sample"]) as mine, np.load(one / entry["sample"]) as theirs:
            assert list(mine) == list(theirs)
            for key in mine:
                assert mine[key].dtype == theirs[key].dtype
                assert np.array_equal(mine[key], theirs[key])
    metrics = json.loads((two / "rollout_sample_metrics.json").read_text())
    assert sorted(metrics) == sorted(e["sample"] for e in manifest)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(two))
    assert dataset.num_samples == 6
    rank1 = [dataset.load_sample(i).metadata["seed"] for i in range(3, 6)]
    assert set(rank1) != {4} and len(set(rank1)) == 1
    assert one_summary["agents"] == 3


def test_a_sharded_capture_into_a_locked_out_stops_every_rank_before_capturing(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    target = tmp_path / "cap"
    holder = (
        "import sys\n"
        "from townlet.policy.rollout.save import capture_target\n"
        f"with capture_target({str(target)!r}):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        start = time.monotonic()
        # A capture this long would take minutes: refused before any rank captures.
        args = ["capture", "--agents", "3", "--ticks", "100000", "--quiet", "--out", str(target)]
        done = torchrun(args, timeout=120)
        elapsed = time.monotonic() - start
    finally:
        proc.communicate("\n", timeout=60)
    assert done.returncode != 0
    lines = [x for x in done.stderr.splitlines() if x.startswith("townlet-train capture: ")]
    assert len(lines) == 2, done.stderr  # one line per rank
    assert all("is being written by another capture" in x for x in lines), lines
    assert elapsed < 60
    assert not target.exists() and os.listdir(tmp_path) == []


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_close_records(one: list[dict[str, object]], two: list[dict[str, object]]) -> None:
    # Counts exact; float statistics to 1e-5 relative: the ranks sum their halves of each
    # minibatch in another order than one process does (~1e-7 per update), and PPO statistics
    # such as the gradient norm amplify that a little over the updates of a run.
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if key.endswith("duration_sec"):
                continue
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
            else:
                assert b[key] == value, key


def _assert_close_checkpoints(one: Path, two: Path) -> None:
    torch = pytest.importorskip("torch")
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    params = [k for k in a if k.startswith("params/")]
    assert params and a.keys() == b.keys()
    for key in params:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), key


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "cap"
    assert main(["capture", "--agents", "3", "--ticks", "40", "--seed", "1", "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    return out


def test_two_rank_ppo_equals_the_one_process_run_and_writes_telemetry_once(
    tmp_path: Path, capture_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    args = ["ppo", "--capture-dir", str(capture_dir), "--epochs", "3", "--batch-size", "3",
            "--quiet"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, "--log", str(one / "t.jsonl"), "--out", str(one)]) == 0
    one_out = json.loads(capsys.readouterr().out)
    done = torchrun([*args, "--telemetry-log", str(two / "t.jsonl"), "--out", str(two)])
    assert done.returncode == 0, done.stderr
    two_out = json.loads(done.stdout)  # rank 0 alone prints
    _assert_close_records(_records(one / "t.jsonl"), _records(two / "t.jsonl"))
    _assert_close_records([one_out], [two_out])
    _assert_close_checkpoints(one / "checkpoint.pt", two / "checkpoint.pt")


def test_two_rank_bc_equals_the_one_process_run(
    tmp_path: Path, capture_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    manifest = capture_dir / "rollout_sample_manifest.json"
    args = ["bc", "--manifest", str(manifest), "--epochs", "2", "--batch-size", "16", "--quiet"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, "--out", str(one)]) == 0
    one_out = json.loads(capsys.readouterr().out)
    done = torchrun([*args, "--out", str(two)])
    assert done.returncode == 0, done.stderr
    _assert_close_records([one_out], [json.loads(done.stdout)])
    _assert_close_records([one_out], [json.loads((two / "result.json").read_text())])
    _assert_close_checkpoints(one / "checkpoint.pt", two / "checkpoint.pt")


def test_two_rank_online_ppo_counts_every_rank_and_logs_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = torchrun(["ppo", "--env", "gymnasium:CartPole-v1", "--total-steps", "1024",
                     "--num-envs", "2", "--rollout-steps", "128", "--eval-episodes", "1",
                     "--out", str(out), "--quiet"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # 1024 steps over 2 ranks × 2 copies × 128 steps: 2 updates of 512 global steps.
    assert (summary["env_steps"], summary["updates"]) == (1024, 2)
    records = _records(out / "telemetry.jsonl")
    assert [r["steps"] for r in records] == [512.0, 1024.0]
    assert [r["transitions"] for r in records] == [512.0 * 4, 512.0 * 4]  # 4 passes (num_epochs)


def _launch_ranks(command: list[str], world: int) -> list[subprocess.Popen[str]]:
    """``command`` once per rank with torchrun's variables (no torchrun: nothing kills the
    survivors for us), on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        pipe = subprocess.PIPE
        procs.append(subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe, text=True))
    return procs


def test_a_killed_rank_ends_a_training_run_in_one_line_within_the_timeout(
    tmp_path: Path, capture_dir: Path
) -> None:
    log = tmp_path / "t.jsonl"
    command = [sys.executable, "-m", "townlet", "--dist-timeout", "30", "ppo", "--capture-dir",
               str(capture_dir), "--epochs", "100000", "--telemetry-log", str(log), "--quiet",
               "--out", str(tmp_path / "run")]  # fmt: skip
    procs = _launch_ranks(command, 2)
    try:
        deadline = time.monotonic() + 240  # imports and rendezvous on a loaded machine
        while time.monotonic() < deadline and not (
            log.exists() and log.read_text().count("\n") > 1
        ):
            assert procs[0].poll() is None and procs[1].poll() is None
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGKILL)  # mid-run: rank 0 has logged epochs
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=120)
        elapsed = time.monotonic() - killed
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)
    assert procs[0].returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("townlet-train ppo: failed: rank 0 of 2: a peer process failed")
    assert elapsed < 30 + 30, elapsed
    assert not (tmp_path / "run").exists()  # no checkpoint of a failed run


def test_the_torchrun_commands_in_the_docs_parse_with_torchrun_and_townlet() -> None:
    """Every ``torchrun ... -m townlet ...`` line of docs/distributed.md and the README goes
    through torchrun's own parser and hands townlet arguments our parser accepts."""
    pytest.importorskip("torch")
    import re
    import shlex

    from torch.distributed.run import get_args_parser

    repo = Path(__file__).resolve().parents[1]
    lines = []
    for doc in (repo / "docs" / "distributed.md", repo / "README.md"):
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            lines += [
                ln for ln in block.replace("\\\n", " ").splitlines() if ln.startswith("torchrun")
            ]
    assert len(lines) >= 8
    for line in lines:
        words = shlex.split(line, comments=True)
        parsed = get_args_parser().parse_args(words[1:])
        assert parsed.module and parsed.training_script == "townlet", line
        build_parser().parse_args(parsed.training_script_args)
