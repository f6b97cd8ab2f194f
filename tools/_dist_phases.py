"""Per-rank phase timers for ``bench_distributed.py --phases``: where a rank's wall time goes.

:func:`install` wraps the functions a workload passes through (by module attribute, so callers
that look them up at call time see the wrapper) with wall-clock accumulators; :func:`report`
returns the totals. Nested phases count in both (``fit_ppo`` includes its ``all_reduce``
calls); the report lists compute = phase − collectives inside it where that matters.
Measurement only: the wrapped functions return what they returned before.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

_TOTALS: dict[str, float] = defaultdict(float)
_COUNTS: dict[str, int] = defaultdict(int)

# (module, attribute, phase): wrapped in place.
_TARGETS = (
    ("townlet.policy.rollout", "capture_rollout", "capture"),
    ("townlet.policy.rollout", "build_rollout_dataset", "dataset_build"),
    ("townlet.policy.training.strategies.anneal.data", "ppo_inputs", "ppo_inputs"),
    ("townlet.policy.training.strategies.anneal.data", "_global_counts", "global_counts"),
    ("townlet.policy.training.strategies.ppo.replay", "prepare_batches", "prepare_batches"),
    ("townlet.policy.training.strategies.ppo.replay", "fit_ppo", "fit_ppo"),
    ("townlet.distributed.parallel", "check_equal_rows", "check_equal_rows"),
    ("townlet.policy.training.strategies.ppo.online_step", "collect_rollout", "collect"),
    ("townlet.policy.training.strategies.ppo.online_step", "ppo_update", "ppo_update"),
    ("townlet.distributed.reduce", "all_reduce_", "reduce_grads_collective"),
    ("townlet.distributed.group", "all_reduce_", "small_all_reduce"),
    ("torch.distributed", "barrier", "barrier"),
    ("torch.distributed", "all_gather_object", "all_gather_object"),
    ("torch.distributed", "broadcast_object_list", "broadcast_object"),
)


def _timed(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _TOTALS[phase] += time.perf_counter() - start
            _COUNTS[phase] += 1

    return wrapper


def _all_reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.distributed.all_reduce`` split by size: gradient buffers vs small count vectors
    (a blocking call's whole time; an ``async_op`` call's launch only — the wait is in the
    ``*_collective`` phases)."""

    @functools.wraps(fn)
    def wrapper(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        phase = "all_reduce_grads" if tensor.numel() > 64 else "all_reduce_counts"
        start = time.perf_counter()
        try:
            return fn(tensor, *args, **kwargs)
        finally:
            _TOTALS[phase] += time.perf_counter() - start
            _COUNTS[phase] += 1

    return wrapper


def install() -> None:
    """Wrap every target (idempotent per process: call once)."""
    import torch

    for module_name, attribute, phase in _TARGETS:
        module = importlib.import_module(module_name)
        if hasattr(module, attribute):  # absent in older trees: measured before/after a change
            setattr(module, attribute, _timed(phase, getattr(module, attribute)))
    import torch.distributed as dist

    dist.all_reduce = _all_reduce(dist.all_reduce)
    _TOTALS["torch_threads"] = float(torch.get_num_threads())
    _TOTALS["torch_interop_threads"] = float(torch.get_num_interop_threads())


def report() -> dict[str, Any]:
    """Seconds and calls per phase since :func:`install`."""
    return {
        "seconds": {k: round(v, 4) for k, v in _TOTALS.items()},
        "calls": dict(_COUNTS),
    }
