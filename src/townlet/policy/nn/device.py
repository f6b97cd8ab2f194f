"""The training device: ``"auto"`` resolved, unavailable devices refused with a clear message.

Torch's own errors for a missing device are an ``AssertionError`` ("Torch not compiled with CUDA
enabled") or a ``RuntimeError`` deep inside the first tensor move; a run should instead fail
before it starts, naming the device it was given and what is available.
"""

from __future__ import annotations

import re

import torch

from townlet.errors import ConfigError

DEVICE_HELP = (
    "torch device: cpu, cuda, cuda:N or auto (cuda when available, else cpu). On CUDA one "
    "minibatch update costs about the same whatever its size (launch-bound), so fewer, larger "
    "minibatches (--ppo-mini-batch-size, --ppo-num-mini-batches) train faster per transition "
    "but make fewer updates per epoch; --compile cudagraph cuts the per-update cost itself"
)
"""The ``--device`` help shared by the training commands."""

_DEVICE_PATTERN = re.compile(r"^(cpu|cuda|mps)(:(\d+))?$")


def available_devices() -> tuple[str, ...]:
    """The devices this torch can train on here: ``cpu``, then ``cuda:0`` … and ``mps``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return tuple(names)


def resolve_device(name: str | torch.device, *, what: str = "device") -> torch.device:
    """``name`` as a ``torch.device`` that exists here; ``"auto"`` is ``cuda`` when available,
    else ``cpu``.

    Raises :class:`~townlet.errors.ConfigError` naming ``what`` (e.g. ``--device``) for a name
    torch does not know, or a device this machine or this torch build does not have (the
    message lists the available ones).
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = name.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = _DEVICE_PATTERN.match(text)
    if match is None:
        raise ConfigError(
            f"{what}: unknown device {name!r}; expected cpu, cuda, cuda:N, mps or auto"
        )
    kind, index = match.group(1), match.group(3)
    available = ", ".join(available_devices())
    if kind == "cuda" and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else "finds no CUDA GPU"
        raise ConfigError(
            f"{what}: {name!r} is not available: torch {torch.__version__} {build} "
            f"(available: {available})"
        )
    if kind == "cuda" and index is not None and int(index) >= torch.cuda.device_count():
        raise ConfigError(
            f"{what}: {name!r} is not available: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s) (available: {available})"
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{what}: {name!r} is not available (available: {available})")
    return torch.device(text)
