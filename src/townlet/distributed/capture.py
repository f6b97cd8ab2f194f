"""Sharded capture: N ranks, each stepping its own source, write ONE Townlet capture directory.

Each rank captures with :func:`~townlet.distributed.launch.rank_seed` (rank 0 with the run seed,
so its samples are exactly the one-process capture's) and writes its own sample files with the
one-process capture's writer (same bytes for the same level) into a staging directory; numbers
run on across ranks in rank order (rank ``r`` starts after the samples of ranks ``< r``), so
names never collide and the directory reads as one capture of all samples. Rank 0 alone
decides where files go, and, after every rank has written, writes
``<prefix>_metrics.json`` and then ``<prefix>_manifest.json`` listing every sample. A new
directory is assembled as a hidden sibling and renamed into place by rank 0, as
:func:`~townlet.policy.rollout.save.save_rollout` does, so a reader never sees a part of it;
into a directory that already holds files the samples are moved in one by one, the manifest
last. The directory must be on a file system every rank can reach (one node, or a shared mount).

One capture at a time per directory, as the one-process capture: rank 0 holds the ``--out``
lock of :mod:`townlet.policy.rollout.commit` (:func:`sharded_capture_target`) from before any
rank captures until the manifest is written, so a second capture into the same directory —
sharded or not — fails at once instead of mixing files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from townlet._atomic import write_text_atomic
from townlet.distributed.group import all_gather_objects, broadcast_object
from townlet.distributed.launch import Collective
from townlet.errors import RolloutError
from townlet.policy.replay import ReplayEventCounts
from townlet.policy.rollout.buffer import RolloutBuffer, episode_returns, rollout_summary
from townlet.policy.rollout.save import (
    capture_target,
    metrics_by_file,
    resolve_level,
    sample_stem,
)
from townlet.policy.rollout.writer_pool import default_workers, write_samples

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

_Plan = tuple[str | None, str, bool]  # (error, staging directory, write into an existing one)


def _plan(target: Path, prefix: str) -> _Plan:
    if not prefix or _UNSAFE.search(prefix):
        return f"prefix must be a non-empty file-name stem, got {prefix!r}", "", False
    if target.exists() and not target.is_dir():
        return f"capture directory {target} exists and is not a directory", "", False
    try:
        in_place = target.is_dir() and any(target.iterdir())
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # every rank raises it, instead of waiting for rank 0
        return f"cannot write capture directory {target}: {exc}", "", False
    return None, staging, in_place


def _write_samples(
    buffer: RolloutBuffer, directory: Path, prefix: str, first: int, level: int | None
) -> tuple[list[dict[str, str]], dict[str, dict[str, float]]]:
    stems = [sample_stem(prefix, a, n) for n, a in enumerate(buffer.agent_ids, start=first)]
    # The one-process capture's writer: the same bytes for the same samples and level.
    jobs = zip(stems, buffer.samples, strict=True)
    write_samples(directory, jobs, level=level, workers=default_workers())
    entries = [{"sample": f"{s}.npz", "meta": f"{s}.json"} for s in stems]
    named = dict(zip((e["sample"] for e in entries), buffer.samples, strict=True))
    return entries, metrics_by_file(named)


def _commit(parts: list[Any], staging: Path, target: Path, prefix: str, in_place: bool) -> None:
    entries = [entry for part in parts for entry in part[1]]
    metrics = {name: m for part in parts for name, m in part[2].items()}
    folder = target if in_place else staging
    if in_place:  # samples first, each atomically; the manifest last
        for entry in entries:
            for name in entry.values():
                os.replace(staging / name, target / name)
    write_text_atomic(folder / f"{prefix}_metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_text_atomic(folder / f"{prefix}_manifest.json", json.dumps(entries, indent=2) + "\n")
    if not in_place:
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; a capture is ordinary data
        os.replace(staging, target)


@contextlib.contextmanager
def sharded_capture_target(directory: str | os.PathLike[str], group: Collective) -> Iterator[Path]:
    """Reserve ``directory`` for one sharded capture: rank 0 takes its lock
    (:func:`~townlet.policy.rollout.save.capture_target`: checked, locked, leftovers of dead
    runs removed) and holds it for the ``with`` block; wrap the capture and
    :func:`save_sharded_rollout` in it. Every rank raises :class:`RolloutError` at once —
    before capturing — when rank 0 cannot take it (another capture holds it, the target is a
    file or cannot be written). The single process takes the lock itself."""
    if not group.is_root:
        error = broadcast_object(group, None)
        if error is not None:
            raise RolloutError(error)
        yield Path(directory)
        return
    with contextlib.ExitStack() as stack:
        try:
            target = stack.enter_context(capture_target(directory))
        except RolloutError as exc:
            broadcast_object(group, str(exc))
            raise
        broadcast_object(group, None)
        yield target


def save_sharded_rollout(
    buffer: RolloutBuffer,
    directory: str | os.PathLike[str],
    group: Collective,
    *,
    prefix: str = "rollout_sample",
    compress: bool = True,
    compress_level: int | None = None,
) -> Path:
    """Write every rank's ``buffer`` into one capture directory (module docstring); every rank
    calls it and gets the directory's path. ``compress``/``compress_level`` as
    :func:`~townlet.policy.rollout.save.save_rollout`. Raises :class:`RolloutError` on every
    rank for a bad prefix or a ``directory`` that is a file, and when any rank failed to write
    its samples (the staging directory is then removed)."""
    target = Path(directory)
    level = resolve_level(compress, compress_level)
    error, where, in_place = broadcast_object(
        group, _plan(target, prefix) if group.is_root else (None, "", False)
    )
    if error is not None:
        raise RolloutError(error)
    counts = all_gather_objects(group, len(buffer.samples))
    first = 1 + sum(counts[: group.rank])
    try:
        entries, metrics = _write_samples(buffer, Path(where), prefix, first, level)
        part: tuple[str | None, Any, Any] = (None, entries, metrics)
    except (OSError, TypeError, ValueError) as exc:
        part = (f"rank {group.rank}: {exc}", [], {})
    parts = all_gather_objects(group, part)
    failures = [p[0] for p in parts if p[0] is not None]
    outcome: str | None = None
    if group.is_root:
        outcome = _finish(parts, failures, Path(where), target, prefix, in_place)
    outcome = broadcast_object(group, outcome)
    if outcome is not None:
        raise RolloutError(f"sharded capture into {target} failed: {outcome}")
    return target


def _finish(
    parts: list[Any], failures: list[str], staging: Path, target: Path, prefix: str, in_place: bool
) -> str | None:
    try:
        if failures:
            return "; ".join(failures)
        _commit(parts, staging, target, prefix, in_place)
        return None
    except OSError as exc:
        return str(exc)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def sharded_summary(buffer: RolloutBuffer, group: Collective, *, seed: int) -> dict[str, Any]:
    """:func:`~townlet.policy.rollout.buffer.rollout_summary` of the union of every rank's
    ``buffer``: agents, frames, returns, episodes and event counters over all ranks, with the
    run's ``seed`` and ``ranks``; the plain summary on one process."""
    if group.backend is None:
        return rollout_summary(buffer)
    local: dict[str, Any] = {
        "returns": [float(s.rewards.sum(dtype=np.float64)) for s in buffer.samples],
        "episodes": [r for s in buffer.samples for r in episode_returns(s)],
        "frames": buffer.frames,
        "events": attrs.asdict(buffer.event_counts),
    }
    parts = all_gather_objects(group, local)
    returns = [r for p in parts for r in p["returns"]]
    episodes = [r for p in parts for r in p["episodes"]]
    events = {k: sum(p["events"][k] for p in parts) for k in local["events"]}
    return {
        **rollout_summary(buffer),
        "seed": seed,
        "agents": len(returns),
        "frames": sum(p["frames"] for p in parts),
        "mean_return": float(np.mean(returns)),
        "episodes": len(episodes),
        "mean_episode_return": float(np.mean(episodes)) if episodes else None,
        "events": ReplayEventCounts(**events).to_dict(),
        "ranks": group.world_size,
    }
