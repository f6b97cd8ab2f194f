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
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
        for name in entry.values():
            assert (two / name).read_bytes() == (one / name).read_bytes()
    metrics = json.loads((two / "rollout_sample_metrics.json").read_text())
    assert sorted(metrics) == sorted(e["sample"] for e in manifest)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    dataset = ReplayDataset(ReplayDatasetConfig.from_capture_dir(two))
    assert dataset.num_samples == 6
    rank1 = [dataset.load_sample(i).metadata["seed"] for i in range(3, 6)]
    assert set(rank1) != {4} and len(set(rank1)) == 1
    assert one_summary["agents"] == 3
