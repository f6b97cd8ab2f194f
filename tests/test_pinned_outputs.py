"""Same seed, same outputs: small ``bc``, ``ppo`` (replay and online), ``anneal`` and ``demo`` runs
hash to what ``tests/data/pinned_outputs.json`` recorded (``tools/pin_outputs.py``).

Float results depend on the CPU and on library versions, so the comparison runs only on a
machine whose key (CPU model, Python, torch, numpy, gymnasium) equals the recorded one — the
project's dev and CI machine — and is skipped, saying why, anywhere else. After an intended
change of outputs, run ``python tools/pin_outputs.py --update`` and say why in the commit.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")
pytest.importorskip("gymnasium")

TOOL = Path(__file__).resolve().parents[1] / "tools" / "pin_outputs.py"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pin_outputs", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("pin_outputs", module)
    spec.loader.exec_module(module)
    return module


pin = _tool()
PINNED = pin.load_pinned()


def test_every_scenario_is_pinned() -> None:
    assert sorted(PINNED["scenarios"]) == sorted(pin.SCENARIOS)
    for name, hashes in PINNED["scenarios"].items():
        assert "<returned>" in hashes and len(hashes) > 3, name


def test_digest_ignores_durations_and_run_paths_but_not_numbers(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(f'{{"loss": 0.5, "epoch_duration_sec": 1.0, "path": "{tmp_path}/x"}}')
    b.write_text('{"loss": 0.5, "epoch_duration_sec": 2.5, "path": "<run>/x"}')
    assert pin.digest_file(a, tmp_path) == pin.digest_file(b, tmp_path)
    b.write_text('{"loss": 0.50000001, "epoch_duration_sec": 2.5, "path": "<run>/x"}')
    assert pin.digest_file(a, tmp_path) != pin.digest_file(b, tmp_path)


@pytest.mark.slow  # ~6 s of CPU: six small runs
@pytest.mark.parametrize("name", sorted(pin.SCENARIOS))
def test_outputs_match_the_pinned_hashes(name: str) -> None:
    key = pin.machine_key()
    if key != PINNED["machine"]:
        pytest.skip(
            f"outputs were pinned on {PINNED['machine']}; this machine is {key}. Float results "
            "are only compared on the same machine and library versions"
        )
    diff = pin.compare(PINNED["scenarios"][name], pin.scenario_hashes(name))
    assert not diff, (
        f"{name}: outputs changed ({'; '.join(diff)}). If intended, run "
        "`python tools/pin_outputs.py --update` and say why in the commit"
    )
