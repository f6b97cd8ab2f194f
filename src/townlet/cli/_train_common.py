"""Shared pieces of the training subcommands (``bc``, ``ppo``): threads, progress, outputs."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from townlet._atomic import write_text_atomic
from townlet._input_limits import short_repr
from townlet.cli import UsageError
from townlet.errors import CompileFallbackWarning, TorchNotAvailableError


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--seed``, ``--out``, ``--quiet``, ``--threads``."""
    parser.add_argument("--seed", type=int, help="run seed: init, shuffles, split (0)")
    parser.add_argument(
        "--out", type=Path, help="write checkpoint.pt and result.json into this directory"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default 1: these networks are small, more threads only "
        "add synchronisation overhead)",
    )


# Far above any useful count for these small networks; torch crashes (not errors) on some huge
# counts, so the bound is checked here.
MAX_THREADS = 1024
MAX_SEED = 2**63 - 1


DEVICE_HELP = (
    "torch device: cpu (default), cuda, cuda:N or auto (cuda when available, else cpu). On "
    "CUDA a minibatch update costs about the same at 32 rows as at thousands (it is bound by "
    "kernel launches), so fewer, larger minibatches train more transitions per second but make "
    "fewer updates per epoch; --compile cudagraph cuts the cost of each update instead "
    "(docs/gpu.md)"
)
COMPILE_HELP = (
    "minibatch update: none (eager, default), inductor (torch.compile), cudagraph (CUDA graph "
    "capture; CUDA only) or auto (cudagraph on CUDA, else none); falls back to eager with one "
    "warning where unavailable (docs/gpu.md)"
)


def add_device_options(parser: argparse.ArgumentParser, *, compile_dest: str) -> None:
    """``--device`` and ``--compile`` (stored as ``compile_dest``; None when not given)."""
    from townlet.config import COMPILE_MODES

    parser.add_argument("--device", help=DEVICE_HELP)
    parser.add_argument("--compile", dest=compile_dest, choices=COMPILE_MODES, help=COMPILE_HELP)


@contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Within the block, a :class:`~townlet.errors.CompileFallbackWarning` is printed as one
    stderr line ``townlet-train <command>: warning: ...``; other warnings as Python prints
    them."""
    with warnings.catch_warnings():
        original = warnings.showwarning

        def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, CompileFallbackWarning):
                sys.stderr.write(f"townlet-train {command}: warning: {message}\n")
            else:
                original(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads: ``threads`` or 1 by default.

    The Townlet network (hidden 256) on minibatches of 32 does too little work per kernel for
    a thread pool to pay off; on CPU, several threads per process are slower (and several runs
    side by side oversubscribe the cores).
    """
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be >= 1 and <= {MAX_THREADS}, got {threads}")
    try:
        import torch
    except ImportError as exc:
        raise TorchNotAvailableError("townlet-train training commands") from exc
    torch.set_num_threads(threads or 1)


def check_seed(seed: int | None) -> None:
    """Refuse a ``--seed`` outside ``[0, 2**63 - 1]``."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be >= 0 and <= 2**63-1, got {short_repr(seed)}")


def check_device(device: str) -> None:
    """Refuse a ``--device`` torch does not know or this machine does not have, before any
    work is done (a CUDA device on a CPU-only build, or with no GPU visible). ``auto`` (cuda
    when available, else cpu) is always fine."""
    if device.strip().lower() == "auto":
        return
    try:
        import torch
    except ImportError as exc:
        raise TorchNotAvailableError("townlet-train training commands") from exc
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(
            f"--device {short_repr(device)}: not a torch device (e.g. cpu, cuda:0)"
        ) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"--device {device}: CUDA is not available (a CPU-only torch build, or no GPU visible)"
        )
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    if parsed.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device}: only cpu and cuda devices are supported")


@contextmanager
def progress_bar(total: int, *, quiet: bool, desc: str) -> Iterator[Any]:
    """A per-epoch tqdm bar on stderr, disabled with ``--quiet`` or when stderr is no TTY."""
    bar = tqdm(
        total=total,
        desc=desc,
        unit="epoch",
        file=sys.stderr,
        disable=quiet or not sys.stderr.isatty(),
        leave=False,
    )
    try:
        yield bar
    finally:
        bar.close()


def without_nulls(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record dict minus the fields that are None (unused optional blocks)."""
    return {key: value for key, value in record.items() if value is not None}


def write_result(out: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``out/result.json`` atomically and return its path."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    target = out / "result.json"
    write_text_atomic(target, json.dumps(payload, indent=2) + "\n")
    return target
