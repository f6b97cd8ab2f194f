"""``townlet-train capture`` under faults: killed with SIGKILL while replacing an older capture
(the old one intact or the new one whole, never a mix; the next run leaves no litter), a second
capture into the same --out, and bad save settings refused before capturing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from townlet.cli import main

_CLI = "from townlet.cli import run; run()"


def _argv(out: Path, seed: int, *extra: str) -> list[str]:
    return ["capture", "--agents", "48", "--ticks", "30", "--seed", str(seed),
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def _tree(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def _cli(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _CLI, *argv], capture_output=True, text=True)


def _kill_while_saving(argv: list[str], parent: Path, delay: float) -> None:
    """Start a capture, wait until its staging directory appears (or ``-delay`` s when
    negative: killed while still capturing), wait ``delay`` s more, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", _CLI, *argv], stdout=subprocess.DEVNULL)
    try:
        if delay < 0:
            time.sleep(-delay)
        else:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if any(p.name.endswith(".tmp") for p in parent.iterdir()):
                    break
                time.sleep(0.002)
            time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _kill_trials(tmp_path: Path, delays: list[float]) -> None:
    slow = ("--writers", "1", "--compress-level", "9")  # a wider window to kill in
    new_ref = tmp_path / "new_ref"
    assert _cli(_argv(new_ref, 2, *slow)).returncode == 0
    parent = tmp_path / "runs"
    target = parent / "cap"
    assert _cli(_argv(target, 1)).returncode == 0
    old, new = _tree(target), _tree(new_ref)
    assert old != new
    outcomes = []
    for delay in delays:
        _kill_while_saving(_argv(target, 2, *slow), parent, delay)
        state = _tree(target) if target.exists() else None
        assert state in (old, new), f"killed after {delay} s: neither the old nor the new capture"
        outcomes.append("new" if state == new else "old")
        if state == new:  # put the old capture back for the next trial
            assert _cli(_argv(target, 1)).returncode == 0
    # The next run removes what the killed ones left and replaces the capture whole.
    done = _cli(_argv(target, 2, *slow))
    assert done.returncode == 0, done.stderr
    assert _tree(target) == new
    assert sorted(p.name for p in parent.iterdir()) == ["cap"]
    assert "old" in outcomes  # at least one kill landed before the swap


def test_sigkill_while_replacing_a_capture(tmp_path: Path) -> None:
    _kill_trials(tmp_path, [-0.3, 0.0, 0.02])


@pytest.mark.slow
def test_sigkill_at_many_moments(tmp_path: Path) -> None:
    _kill_trials(
        tmp_path, [-0.5, -1.0, 0.0, 0.001, 0.005, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2]
    )


def test_second_capture_into_the_same_out_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "cap"
    holder = textwrap.dedent(
        f"""
        import sys
        from townlet.policy.rollout.save import capture_target
        with capture_target({str(target)!r}):
            print("held", flush=True)
            sys.stdin.readline()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        start = time.monotonic()
        code = main([*_argv(target, 3), "--ticks", "100000"])  # refused before capturing
        _, err = capsys.readouterr()
        assert time.monotonic() - start < 30
    finally:
        proc.communicate("\n", timeout=60)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("townlet-train capture: error: capture directory ")
    assert "is being written by another capture" in err
    assert not target.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--compress-level", "12"], "compress_level must be an int from 0 to 9, got 12"),
        (["--compress-level", "3", "--no-compress"], "--compress-level and --no-compress"),
        (["--writers", "-2"], "workers must be an int from 0 to 64, got -2"),
        (["--prefix", "../up"], "prefix must be a non-empty file-name stem"),
    ],
)
def test_bad_save_settings_exit_2_before_capturing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["capture", "--agents", "2", "--ticks", "1000000", "--out", str(tmp_path / "c")]
    start = time.monotonic()
    code = main([*argv, *extra])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and err.count("\n") == 1
    assert time.monotonic() - start < 30 and list(tmp_path.iterdir()) == []


def test_out_under_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    code = main(["capture", "--agents", "2", "--ticks", "3", "--out", str(tmp_path / "f" / "c")])
    _, err = capsys.readouterr()
    assert code == 2 and "f/c cannot be written:" in err and "is a file" in err
