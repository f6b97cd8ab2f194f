"""Pin the numeric outputs of small seeded runs, so that a refactor can prove it changed nothing.

Runs ``bc``, ``ppo --manifest`` (replay), ``ppo --env gymnasium:CartPole-v1`` (online),
``anneal`` (replay data and fresh rollouts) and a tiny ``demo`` with fixed seeds, each in a
fresh temporary directory, and hashes every file they write: JSON and JSONL with durations,
wall times and the temporary paths taken out, checkpoints tensor by tensor (name, dtype, shape,
bytes) plus their header. The hashes are stored in ``tests/data/pinned_outputs.json`` together
with a *machine key* (CPU model, Python, torch, numpy, gymnasium versions):
``tests/test_pinned_outputs.py`` compares on a machine with the same key and skips elsewhere,
because float results may differ between CPUs and library versions (the project pins
same-machine equality only).

Usage::

    python tools/pin_outputs.py            # compare with the stored hashes (exit 1 on a change)
    python tools/pin_outputs.py --update   # record the current outputs (after an intended change)
    python tools/pin_outputs.py --only bc ppo_replay   # a subset

Run ``--update`` only when a change of outputs is intended, and say why in the commit.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import platform
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PINNED = REPO / "tests" / "data" / "pinned_outputs.json"

# Keys whose values are clocks or wall times: the only nondeterministic outputs of a run.
_VOLATILE = re.compile(r"duration|wall|seconds|timestamp|elapsed|created|_time$|^time")

ANNEAL_SCHEDULE = """
seed = 1
[world]
num_agents = 3
[training]
anneal_accuracy_threshold = 0.2
anneal_loss_tolerance = 1e9
[training.bc]
epochs = 1
[[training.anneal_schedule]]
cycle = 0
mode = "bc"
[[training.anneal_schedule]]
cycle = 1
mode = "ppo"
bc_weight = 0.5
[[training.anneal_schedule]]
cycle = 2
mode = "ppo"
bc_weight = 0.0
"""


def machine_key() -> dict[str, str]:
    """What float results depend on besides the code: the CPU model and library versions."""
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        import gymnasium

        gym_version = str(gymnasium.__version__)
    except ImportError:
        gym_version = "absent"
    return {
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "gymnasium": gym_version,
    }


def _scrub(value: Any, root: str) -> Any:
    """``value`` without volatile keys, with the run directory written as ``<run>``."""
    if isinstance(value, dict):
        return {
            k: _scrub(v, root)
            for k, v in sorted(value.items())
            if not (isinstance(k, str) and _VOLATILE.search(k))
        }
    if isinstance(value, list):
        return [_scrub(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<run>")
    return value


def _json_bytes(value: Any, root: str) -> bytes:
    return json.dumps(_scrub(value, root), sort_keys=True).encode()


def digest_file(path: Path, root: Path) -> str:
    """The sha256 of ``path``'s numeric content (see the module docstring)."""
    digest = hashlib.sha256()
    if path.suffix == ".json":
        digest.update(_json_bytes(json.loads(path.read_text()), str(root)))
    elif path.suffix == ".jsonl" or re.search(r"\.jsonl\.\d+$", path.name):
        for line in path.read_text().splitlines():
            digest.update(_json_bytes(json.loads(line), str(root)))
    elif path.suffix == ".pt":
        import torch

        payload = torch.load(path, map_location="cpu", weights_only=True)
        for name in sorted(payload):
            item = payload[name]
            digest.update(name.encode())
            if isinstance(item, torch.Tensor):
                tensor = item.detach().contiguous().cpu()
                digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
                digest.update(tensor.view(torch.uint8).numpy().tobytes())
            elif isinstance(item, str) and item.lstrip().startswith("{"):
                digest.update(_json_bytes(json.loads(item), str(root)))
            else:
                digest.update(repr(item).replace(str(root), "<run>").encode())
    elif path.suffix in (".npz", ".npy"):
        import numpy as np

        with np.load(path, allow_pickle=False) as arrays:
            items = arrays.items() if hasattr(arrays, "items") else [("array", arrays)]
            for name, array in sorted(items):
                digest.update(f"{name}{array.dtype}{array.shape}".encode())
                digest.update(np.ascontiguousarray(array).tobytes())
    elif path.suffix == ".png":
        return "png"  # a rendering of the telemetry, not a numeric output
    else:
        digest.update(path.read_bytes().replace(str(root).encode(), b"<run>"))
    return digest.hexdigest()


def _cli(argv: list[str]) -> Any:
    """Run ``townlet-train argv`` in-process and return its printed JSON."""
    from townlet.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    if code != 0:
        raise RuntimeError(f"townlet-train {' '.join(argv)} exited {code}: {err.getvalue()}")
    text = out.getvalue().strip()
    return json.loads(text) if text.startswith(("{", "[")) else text


def _capture(work: Path) -> Path:
    from townlet.policy.rollout import capture_rollout, save_rollout
    from townlet.world import WorldConfig

    capture = work / "capture"
    save_rollout(capture_rollout(WorldConfig(num_agents=3), "scripted", 30, 0), capture)
    return capture


def run_bc(work: Path) -> Any:
    manifest = _capture(work) / "rollout_sample_manifest.json"
    return _cli(["bc", "--manifest", str(manifest), "--epochs", "2", "--val-fraction", "0.25",
                 "--out", str(work / "bc"), "--seed", "3", "--quiet"])  # fmt: skip


def run_ppo_replay(work: Path) -> Any:
    capture = _capture(work)
    manifest = capture / "rollout_sample_manifest.json"
    _cli(["bc", "--manifest", str(manifest), "--epochs", "1", "--out", str(work / "bc"),
          "--seed", "3", "--quiet"])  # fmt: skip
    first = _cli(["ppo", "--manifest", str(manifest), "--epochs", "3", "--batch-size", "2",
                  "--init", str(work / "bc" / "checkpoint.pt"), "--critic-warmup-epochs", "1",
                  "--log", str(work / "ppo.jsonl"), "--log-max-entries", "2",
                  "--out", str(work / "ppo"), "--seed", "2", "--quiet",
                  "--ppo-mini-batch-size", "16", "--ppo-bc-coef", "0.25"])  # fmt: skip
    second = _cli(["ppo", "--capture-dir", str(capture), "--epochs", "2",
                   "--out", str(work / "ppo2"), "--seed", "5", "--quiet"])  # fmt: skip
    return {"init_bc": first, "fresh": second}


def run_ppo_online(work: Path) -> Any:
    return _cli(["ppo", "--env", "gymnasium:CartPole-v1", "--total-steps", "2048",
                 "--num-envs", "4", "--rollout-steps", "128", "--eval-episodes", "2",
                 "--ppo-num-epochs", "3", "--ppo-mini-batch-size", "64",
                 "--out", str(work / "online"), "--seed", "3", "--quiet"])  # fmt: skip


def run_anneal_replay(work: Path) -> Any:
    capture = _capture(work)
    config = work / "anneal.toml"
    config.write_text(ANNEAL_SCHEDULE)
    return _cli(["anneal", "--config", str(config), "--capture-dir", str(capture),
                 "--bc-manifest", str(capture / "rollout_sample_manifest.json"),
                 "--out", str(work / "run"), "--quiet"])  # fmt: skip


def run_anneal_rollout(work: Path) -> Any:
    capture = _capture(work)
    config = work / "anneal.toml"
    config.write_text(ANNEAL_SCHEDULE)
    return _cli(["anneal", "--config", str(config), "--rollout-ticks", "30",
                 "--bc-manifest", str(capture / "rollout_sample_manifest.json"),
                 "--out", str(work / "run"), "--quiet"])  # fmt: skip


def run_demo(work: Path) -> Any:
    import torch

    from townlet.policy.training import demo

    settings = demo.DemoSettings(
        agents=3, demo_ticks=60, bc_epochs=2, cycles=2, ppo_epochs=1, rollout_ticks=30,
        eval_episodes=2, eval_ticks=30, bc_threshold=0.1,
    )  # fmt: skip
    torch.set_num_threads(1)
    return demo.run_demo(work / "demo", seed=2, settings=settings, quiet=True, plot=False,
                         report=lambda line: None)  # fmt: skip


SCENARIOS: dict[str, Callable[[Path], Any]] = {
    "bc": run_bc,
    "ppo_replay": run_ppo_replay,
    "ppo_online": run_ppo_online,
    "anneal_replay": run_anneal_replay,
    "anneal_rollout": run_anneal_rollout,
    "demo": run_demo,
}


def scenario_hashes(name: str) -> dict[str, str]:
    """Run scenario ``name`` in a fresh directory: ``{relative path: hash}`` of every file it
    wrote, plus ``<stdout>`` for what it returned."""
    with tempfile.TemporaryDirectory(prefix=f"pin-{name}-") as tmp:
        work = Path(tmp)
        returned = SCENARIOS[name](work)
        hashes = {
            str(path.relative_to(work)): digest_file(path, work)
            for path in sorted(work.rglob("*"))
            if path.is_file()
        }
        hashes["<returned>"] = hashlib.sha256(_json_bytes(returned, str(work))).hexdigest()
        return hashes


def compare(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """The differences between two ``{path: hash}`` maps, one line each."""
    lines = [f"missing: {k}" for k in sorted(set(expected) - set(actual))]
    lines += [f"new: {k}" for k in sorted(set(actual) - set(expected))]
    lines += [
        f"changed: {k}" for k in sorted(set(expected) & set(actual)) if expected[k] != actual[k]
    ]
    return lines


def load_pinned(path: Path = PINNED) -> dict[str, Any]:
    """The stored ``{"machine": ..., "scenarios": {name: {path: hash}}}``."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="record the current outputs")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="these scenarios")
    args = parser.parse_args(None if argv is None else list(argv))
    names = args.only or list(SCENARIOS)
    key = machine_key()
    stored = load_pinned() if PINNED.is_file() else {"machine": key, "scenarios": {}}
    if args.update:
        if stored["machine"] != key:
            stored = {"machine": key, "scenarios": {}}
        for name in names:
            stored["scenarios"][name] = scenario_hashes(name)
            print(f"{name}: {len(stored['scenarios'][name])} outputs recorded")
        PINNED.parent.mkdir(parents=True, exist_ok=True)
        PINNED.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        return 0
    if stored["machine"] != key:
        print(f"pinned on {stored['machine']}, this machine is {key}: nothing to compare")
        return 0
    failed = False
    for name in names:
        diff = compare(stored["scenarios"].get(name, {}), scenario_hashes(name))
        print(f"{name}: {'OK' if not diff else 'CHANGED'}")
        for line in diff:
            print(f"  {line}")
        failed = failed or bool(diff)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
