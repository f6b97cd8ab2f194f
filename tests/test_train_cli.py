"""``townlet-train bc`` and ``townlet-train ppo``: outputs, files and exit codes; torch-free
import of the training modules."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from _replay_helpers import PHASE4, make_sample, reference_root
from townlet.cli import main
from townlet.dto.telemetry_validate import validate_telemetry
from townlet.policy.replay import save_replay_sample

pytest.importorskip("torch")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else out.out, out.err


def test_ppo_capture_dir_log_and_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    reference_root()
    log = tmp_path / "ppo.jsonl"
    code, record, err = _run(
        capsys, "ppo", "--capture-dir", str(PHASE4 / "queue_conflict"), "--epochs", "3",
        "--batch-size", "3", "--log", str(log), "--log-max-entries", "2",
        "--out", str(tmp_path / "out"), "--seed", "2", "--ppo-mini-batch-size", "64",
    )  # fmt: skip
    assert code == 0, err
    assert record["epoch"] == 3.0 and record["transitions"] == 180.0
    assert record["steps"] == 540.0 and record["updates"] == 4.0  # 180 // 4 = 45 per minibatch
    assert "anneal_cycle" not in record  # None fields are left out
    assert validate_telemetry(log).ok and len(log.read_text().splitlines()) == 2
    assert len((tmp_path / "ppo.jsonl.1").read_text().splitlines()) == 1
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved == record
    from townlet.policy.training.strategies.ppo.checkpoint import load_ppo_state

    state = load_ppo_state(tmp_path / "out" / "checkpoint.pt")
    assert (state.seed, state.steps, state.log_stream_offset) == (2, 540, 3)


def test_bc_then_ppo_init(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = reference_root()
    manifest = root / "data" / "bc_datasets" / "manifests" / "idle_v1.json"
    code, result, err = _run(
        capsys, "bc", "--manifest", str(manifest), "--root", str(root), "--epochs", "2",
        "--val-fraction", "0.25", "--out", str(tmp_path / "bc"), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert result["mode"] == "bc" and result["epochs"] == 2 and result["val_accuracy"] == 1.0
    checkpoint = tmp_path / "bc" / "checkpoint.pt"
    code, record, err = _run(
        capsys, "ppo", "--manifest", str(manifest), "--root", str(root),
        "--init", str(checkpoint), "--critic-warmup-epochs", "1", "--epochs", "2",
    )  # fmt: skip
    assert code == 0, err
    assert record["epoch"] == 2.0 and record["transitions"] == 400.0
    code, _, err = _run(
        capsys, "ppo", "--capture-dir", str(PHASE4 / "queue_conflict"), "--init", str(checkpoint)
    )
    assert code == 2 and "does not fit the network of the checkpoint" in err


def test_bc_from_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = reference_root()
    manifest = root / "data" / "bc_datasets" / "manifests" / "idle_v1.json"
    config = tmp_path / "c.toml"
    config.write_text(f'seed = 3\n[training.bc]\nmanifest = "{manifest}"\nepochs = 1\n')
    code, result, err = _run(capsys, "bc", "--config", str(config), "--root", str(root))
    assert code == 0, err
    assert result["epochs"] == 1 and result["manifest"] == str(manifest)


def test_ppo_one_sample_and_config_overrides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    npz, _ = save_replay_sample(make_sample(5), tmp_path / "s.npz")
    config = tmp_path / "c.toml"
    config.write_text("seed = 4\n[ppo]\nlearning_rate = 0.001\n")
    code, record, err = _run(
        capsys, "ppo", "--sample", str(npz), "--config", str(config),
        "--ppo-advantage-normalization", "false", "--ppo-bc-coef", "0.5",
    )  # fmt: skip
    assert code == 0, err
    assert record["lr"] == 0.001 and record["data_mode"] == "replay"
    assert record["bc_coef"] == 0.5 and "loss_bc" in record


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ppo-clip-param", "1.5"], "clip_param: 1.5 is not in [0, 1]"),
        (["--ppo-num-mini-batches", "0"], "num_mini_batches"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--log-frequency", "0"], "--log-frequency must be >= 1"),
    ],
)
def test_ppo_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    npz, _ = save_replay_sample(make_sample(3), tmp_path / "s.npz")
    code, _, err = _run(capsys, "ppo", "--sample", str(npz), *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_bool_and_missing_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["ppo", "--sample", "x.npz", "--ppo-advantage-normalization", "maybe"])
    assert caught.value.code == 2
    code, _, err = _run(capsys, "ppo")
    assert code == 2 and "give --manifest, --capture-dir or --sample" in err
    code, _, err = _run(capsys, "ppo", "--sample", str(tmp_path / "missing.npz"))
    assert code == 2
    code, _, err = _run(capsys, "bc", "--manifest", str(tmp_path / "none.json"), "--quiet")
    assert code == 2


def test_failed_run_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from townlet.errors import NonFiniteTrainingError
    from townlet.policy.training.strategies.ppo import replay as ppo_loop

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise NonFiniteTrainingError("PPO advantages contained NaN/inf (dataset=s, batch=1)")

    monkeypatch.setattr(ppo_loop, "prepare_batches", explode)
    npz, _ = save_replay_sample(make_sample(3), tmp_path / "s.npz")
    code, _, err = _run(capsys, "ppo", "--sample", str(npz))
    assert code == 1 and "failed: PPO advantages contained NaN/inf" in err


_NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is hidden ({name})")
            return None

    sys.meta_path.insert(0, _NoTorch())
    import townlet
    import townlet.policy.training.strategies.ppo.train
    import townlet.policy.training.strategies.ppo.summary
    import townlet.policy.training.telemetry_log
    import townlet.policy.training.strategies.bc.train
    import townlet.cli.bc_cmd, townlet.cli.ppo_cmd
    out = {}
    for name in ("train_ppo", "train_bc"):
        try:
            getattr(townlet, name)(None)
        except townlet.TorchNotAvailableError as exc:
            out[name] = str(exc)
    from townlet.cli import main
    out["cli"] = main(["bc", "--manifest", "none.json"])
    print(json.dumps(out))
    """
)


def test_training_entry_points_without_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["train_ppo"].startswith("train_ppo needs PyTorch")
    assert "pip install 'townlet[torch]'" in out["train_bc"]
    assert out["cli"] == 1
