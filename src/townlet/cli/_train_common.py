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
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    try:
        import torch
    except ImportError as exc:
        raise TorchNotAvailableError("townlet-train training commands") from exc
    torch.set_num_threads(threads or 1)


def check_seed(seed: int | None) -> None:
    """Refuse a negative ``--seed``."""
    if seed is not None and seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")


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
