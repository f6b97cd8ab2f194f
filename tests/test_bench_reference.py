"""tools/bench_reference.py refuses bad input with one line and exit 2, before running anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "bench_reference.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, check=False
    )


def test_reference_path_is_required() -> None:
    done = _run()
    assert done.returncode == 2
    assert "--reference PATH is required" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_reference_directory_is_named(tmp_path: Path) -> None:
    done = _run("--reference", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert f"{tmp_path / 'nowhere'}: no such directory" in done.stderr


def test_a_directory_that_is_not_townlet_is_named(tmp_path: Path) -> None:
    done = _run("--reference", str(tmp_path))
    assert done.returncode == 2
    assert "src/townlet/policy/training_orchestrator.py is missing" in done.stderr


def test_missing_reference_dependencies_are_reported(tmp_path: Path) -> None:
    # A checkout-shaped directory, probed with an interpreter that cannot import its deps.
    for name in ("src/townlet/policy/training_orchestrator.py", "configs/examples/poc_hybrid.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "src" / "pydantic.py").write_text("raise ImportError('no pydantic here')\n")
    done = _run("--reference", str(tmp_path))
    assert done.returncode == 2
    assert "cannot import the reference's dependencies" in done.stderr
    assert "no pydantic here" in done.stderr
