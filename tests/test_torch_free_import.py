"""The torch-free surface imports and works in a subprocess where ``import torch`` fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "townlet"

_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is hidden for this test ({name})")
            return None

    sys.meta_path.insert(0, _NoTorch())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the torch blocker did not work")

    import importlib
    for name in MODULES:
        importlib.import_module(name)

    import townlet
    cfg = townlet.load_config(CONFIG)
    records = townlet.read_telemetry(LOG)
    report = townlet.validate_telemetry(records)
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    print(json.dumps({"lr": cfg.ppo.learning_rate, "records": len(records),
                      "ok": report.ok, "torch_modules": loaded}))
    """
)


def _modules() -> list[str]:
    names = [
        "townlet",
        "townlet.config",
        "townlet.dto.policy",
        "townlet.dto.convert",
        "townlet.dto.telemetry",
        "townlet.dto.telemetry_validate",
        "townlet.policy.training",
        "townlet.cli",
        "townlet.cli.telemetry_cmd",
        "townlet.cli.replay_cmd",
        "townlet.policy.replay",
        "townlet.policy.nn.spec",
        "townlet.policy.training.strategies.anneal.flags",
        "townlet.policy.training.services.promotion",
        "townlet.policy.training.services.promotion_io",
        "townlet.world",
        "townlet.cli.promote_cmd",
        "townlet.cli.capture_cmd",
        "townlet.envs.gymnasium_adapter",
        "townlet.policy.rollout",
        "townlet.policy.training.services.rollout",
        "townlet.cli.ppo_cmd",
        "townlet.cli.evaluate_cmd",
        "townlet.policy.training.strategies.ppo.online",
        "townlet.policy.training.strategies.anneal.run",
        "townlet.policy.training.strategies.anneal.io",
        "townlet.policy.training.strategies.anneal.step",
        "townlet.policy.training.orchestrator",
        "townlet.policy.training.demo",
        "townlet.policy.training.demo_plot",
        "townlet.cli.anneal_cmd",
        "townlet.cli.demo_cmd",
        # #11: the fold, the named streams, the torch-free modules of each strategy package
        "townlet.policy.streams",
        "townlet.policy.policy_argument",
        "townlet.policy.training.fold",
        "townlet.policy.training.telemetry_log",
        "townlet.policy.training.strategies.ppo",
        "townlet.policy.training.strategies.ppo.train",
        "townlet.policy.training.strategies.ppo.stats",
        "townlet.policy.training.strategies.ppo.summary",
        "townlet.policy.training.strategies.bc",
        "townlet.policy.training.strategies.bc.train",
        "townlet.policy.training.strategies.anneal",
        "townlet.policy.training.strategies.anneal.data",
        "townlet.policy.training.strategies.anneal.state",
        "townlet.policy.training.strategies.ppo_loop",
        "townlet.policy.training.strategies.anneal_step",
    ]
    return names


def test_imports_and_io_without_torch(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[ppo]\nlearning_rate = 0.001\n")
    log = tmp_path / "log.jsonl"
    line = {
        "epoch": 1.0, "updates": 1.0, "transitions": 2.0, "loss_policy": 0.1,
        "loss_value": 0.2, "loss_entropy": 1.0, "loss_total": 0.2, "clip_fraction": 0.0,
        "adv_mean": 0.0, "adv_std": 1.0, "grad_norm": 0.3, "kl_divergence": 0.0,
        "telemetry_version": 1.0, "lr": 0.0003, "steps": 2.0,
    }  # fmt: skip
    log.write_text(json.dumps(line) + "\n")
    prelude = f"MODULES = {_modules()!r}\nCONFIG = {str(config)!r}\nLOG = {str(log)!r}\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + _SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"lr": 0.001, "records": 1, "ok": False, "torch_modules": []}
