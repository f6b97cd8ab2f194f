"""A/B of the town's ``observe`` against its version at another git revision, in one process.

Usage: ``python tools/bench_observe.py [--rev 407416f] [--agents 2048] [--ticks 50] [--rounds 7]``.
Loads ``src/townlet/world/observe.py`` as it was at ``--rev`` (``git show``) beside the current
one, checks that both give equal maps and features on the same states, then alternates, per
round: bare ``step`` (scripted actions computed outside the timed region), ``scripted_actions``
+ ``step`` + old ``observe``, and the same with the current ``observe``. Prints agent-steps/s
(median and best over rounds, CPU time of this process, so time spent waiting for a core on a
loaded machine is left out). Thread pools are pinned to one thread before numpy is imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from townlet.world import observe, reset, scaled_world_config, scripted_actions, step  # noqa: E402
from townlet.world.config import WorldConfig  # noqa: E402

BASE_REV = "407416f"  # main before issue #16's changes to observe


def _old_observe(rev: str) -> ModuleType:
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{rev}:src/townlet/world/observe.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "observe_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("observe_old", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loop(cfg: WorldConfig, ticks: int, obs: Callable[[Any], object] | None) -> float:
    state = reset(cfg, 0)
    rng = np.random.default_rng(0)
    spent = 0.0
    for _ in range(ticks):
        actions = scripted_actions(state, None, rng) if obs is None else None
        start = time.process_time()
        if obs is None:
            state, _, _, _ = step(state, actions)
        else:
            state, _, _, _ = step(state, scripted_actions(state, None, rng))
            obs(state)
        spent += time.process_time() - start
    return spent


def main() -> int:
    """Check equality, run the rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=BASE_REV, help="git revision of the old observe")
    parser.add_argument("--agents", type=int, default=2048)
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    old = _old_observe(args.rev)
    cfg = scaled_world_config(args.agents)
    state, rng = reset(cfg, 0), np.random.default_rng(0)
    for _ in range(10):
        state, _, _, _ = step(state, scripted_actions(state, None, rng))
        now, before = observe(state), old.observe(state)
        assert all(np.array_equal(a, b) for a, b in zip(now, before, strict=True)), "differ"
    kinds: dict[str, Callable[[Any], object] | None] = {
        "bare step": None,
        f"step + scripted + observe ({args.rev})": old.observe,
        "step + scripted + observe (now)": observe,
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for name, obs in kinds.items():
            times[name].append(_loop(cfg, args.ticks, obs))
    steps = args.agents * args.ticks
    print(
        f"{args.agents} agents × {args.ticks} ticks, {args.rounds} rounds, load {os.getloadavg()}"
    )
    for name, spent in times.items():
        print(
            f"{name}: {steps / np.median(spent):,.0f} agent-steps/s median, "
            f"{steps / min(spent):,.0f} best"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
