"""The world's names are reachable from ``townlet`` and import without torch or pettingzoo."""

from __future__ import annotations

import subprocess
import sys

import townlet
from townlet import world


def test_top_level_names_resolve_to_the_world_functions() -> None:
    assert townlet.WorldConfig is world.WorldConfig
    assert townlet.reset_world is world.reset and townlet.step_world is world.step
    assert townlet.observe_world is world.observe
    assert townlet.scripted_actions is world.scripted_actions


def test_world_imports_without_torch_cattrs_or_pettingzoo() -> None:
    code = (
        "import sys\n"
        "for m in ('torch', 'cattrs', 'pettingzoo', 'gymnasium'): sys.modules[m] = None\n"
        "import townlet.world as w\n"
        "s = w.reset(w.WorldConfig(), 0)\n"
        "s, r, d, e = w.step(s, w.scripted_actions(s))\n"
        "print(w.observe(s)[1].shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(8, 33)"
