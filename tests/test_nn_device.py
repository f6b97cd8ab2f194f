"""resolve_device and the --device/--compile options: auto, clear errors, results unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from _replay_helpers import make_sample  # noqa: E402
from townlet.cli import main  # noqa: E402
from townlet.config import BCConfig  # noqa: E402
from townlet.errors import ConfigError  # noqa: E402
from townlet.policy.nn.compiled import CompileFallbackWarning  # noqa: E402
from townlet.policy.nn.device import available_devices, resolve_device  # noqa: E402
from townlet.policy.replay import save_replay_sample  # noqa: E402
from townlet.policy.training.strategies.bc import train_bc  # noqa: E402

NO_CUDA = not torch.cuda.is_available()


def test_auto_is_cuda_when_available_else_cpu() -> None:
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_device_names_the_option_and_the_choices(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_device(name, what="--device")
    assert str(caught.value) == (
        f"--device: unknown device {name!r}; expected cpu, cuda, cuda:N, mps or auto"
    )


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_why_and_what_is_available() -> None:
    with pytest.raises(ConfigError, match=r"^device: 'cuda:1' is not available: torch .*") as e:
        resolve_device("cuda:1")
    assert "(available: cpu" in str(e.value)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else out.out, out.err


def test_cli_bad_device_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    npz, _ = save_replay_sample(make_sample(3), tmp_path / "s.npz")
    code, _, err = _run(capsys, "ppo", "--sample", str(npz), "--device", "gpu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--device 'gpu': not a torch device" in err  # the CLI's own check (#17)
    if NO_CUDA:
        code, _, err = _run(capsys, "ppo", "--sample", str(npz), "--device", "cuda")
        assert code == 2 and "CUDA is not available" in err
    code, _record, err = _run(capsys, "ppo", "--sample", str(npz), "--device", "auto", "--quiet")
    assert code == 0, err
    with pytest.raises(SystemExit) as caught:
        main(["ppo", "--sample", str(npz), "--compile", "jit"])
    assert caught.value.code == 2


def _toy_samples() -> list[Any]:
    return [make_sample(20, seed=seed) for seed in range(2)]


def test_bc_auto_device_and_cudagraph_off_cuda_equal_the_default_run() -> None:
    base = train_bc(_toy_samples(), cfg=BCConfig(epochs=2, batch_size=8), seed=1)
    cfg = BCConfig(epochs=2, batch_size=8, device="auto", compile="cudagraph")
    if NO_CUDA:
        with pytest.warns(CompileFallbackWarning, match="cudagraph needs a CUDA device"):
            other = train_bc(_toy_samples(), cfg=cfg, seed=1)
        assert other.result.device == "cpu"
        assert other.result.loss == base.result.loss
        assert other.history == base.history
        for name, value in base.params.items():
            assert torch.equal(value, other.params[name])
    with pytest.raises(ConfigError, match=r"training\.bc\.device: unknown device 'gpu'"):
        train_bc(_toy_samples(), cfg=BCConfig(device="gpu"))
