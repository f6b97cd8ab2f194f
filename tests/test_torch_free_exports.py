"""Every public name of ``townlet`` (and ``townlet.policy.nn``) either resolves without torch or
raises ``TorchNotAvailableError`` with the install hint — never a raw ``ImportError``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, json, sys

    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is hidden for this test ({name})")
            return None

    sys.meta_path.insert(0, _NoTorch())
    from townlet.errors import TorchNotAvailableError

    out = {}
    for package in ("townlet", "townlet.policy.nn"):
        module = importlib.import_module(package)
        for name in module.__all__:
            try:
                getattr(module, name)
            except TorchNotAvailableError as exc:
                out[f"{package}.{name}"] = "torch:" + str(exc)
            except Exception as exc:
                out[f"{package}.{name}"] = f"other:{type(exc).__name__}: {exc}"
            else:
                out[f"{package}.{name}"] = "ok"
    print(json.dumps(out))
    """
)

# The exports that compute with torch (network, optimiser, checkpoints, PPO epochs).
NEED_TORCH = {
    "townlet.AdamConfig",
    "townlet.Checkpoint",
    "townlet.EpochData",
    "townlet.NetworkPolicy",
    "townlet.init_params",
    "townlet.load_checkpoint",
    "townlet.load_network_policy",
    "townlet.load_ppo_state",
    "townlet.make_network_policy",
    "townlet.ppo_epoch",
    "townlet.prepare_batches",
    "townlet.replay_epoch",
    "townlet.save_checkpoint",
    "townlet.save_ppo_state",
}


def test_every_export_resolves_or_raises_torch_not_available() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    import townlet
    import townlet.policy.nn

    assert len(outcome) == len(townlet.__all__) + len(townlet.policy.nn.__all__)
    others = {name: why for name, why in outcome.items() if why.startswith("other:")}
    assert others == {}
    failing = {name for name, why in outcome.items() if why.startswith("torch:")}
    assert failing >= NEED_TORCH
    assert {n for n in failing if n.startswith("townlet.policy.nn.")} | NEED_TORCH == failing
    for name in NEED_TORCH:
        message = outcome[name]
        assert name.rsplit(".", 1)[1] in message, message
        assert "pip install 'townlet[torch]'" in message, message
    # The torch-free surface stays torch-free.
    for name in ("townlet.NetworkSpec", "townlet.train_ppo", "townlet.RolloutBuffer"):
        assert outcome[name] == "ok", name
