"""Sharded capture: N ranks, each stepping its own source, write ONE Townlet capture directory.

Each rank captures with :func:`~townlet.distributed.launch.rank_seed` (rank 0 with the run seed,
so its samples are exactly the one-process capture's) and writes its own sample files; numbers
run on across ranks in rank order (rank ``r`` starts after the samples of ranks ``< r``), so
names never collide and the directory reads as one capture of all samples. Rank 0 alone
decides where files go, and, after every rank has written, writes
``<prefix>_metrics.json`` and then ``<prefix>_manifest.json`` listing every sample. A new
directory is assembled as a hidden sibling and renamed into place by rank 0, as
:func:`~townlet.policy.rollout.save.save_rollout` does, so a reader never sees a part of it.
The directory must be on a file system every rank can reach (one node, or a shared mount).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from townlet._atomic import write_text_atomic
from townlet.distributed.group import all_gather_objects, broadcast_object
from townlet.distributed.launch import Collective
from townlet.errors import RolloutError
from townlet.policy.replay import ReplayEventCounts, save_replay_sample
from townlet.policy.rollout.buffer import RolloutBuffer, episode_returns, rollout_summary
from townlet.policy.rollout.save import metrics_by_file, sample_stem

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

_Plan = tuple[str | None, str, bool]  # (error, directory to write into, is a staging directory)


def _plan(target: Path, prefix: str) -> _Plan:
    if not prefix or _UNSAFE.search(prefix):
        return f"prefix must be a non-empty file-name stem, got {prefix!r}", "", False
    if target.exists() and not target.is_dir():
        return f"capture directory {target} exists and is not a directory", "", False
    try:
        if target.is_dir() and any(target.iterdir()):
            return None, str(target), False
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # every rank raises it, instead of waiting for rank 0
        return f"cannot write capture directory {target}: {exc}", "", False
    return None, staging, True


def _write_samples(
    buffer: RolloutBuffer, directory: Path, prefix: str, first: int, compress: bool
) -> tuple[list[dict[str, str]], dict[str, dict[str, float]]]:
    entries, named = [], {}
    for number, (sample, agent) in enumerate(
        zip(buffer.samples, buffer.agent_ids, strict=True), start=first
    ):
        stem = sample_stem(prefix, agent, number)
        save_replay_sample(sample, directory / f"{stem}.npz", compress=compress)
        entries.append({"sample": f"{stem}.npz", "meta": f"{stem}.json"})
        named[f"{stem}.npz"] = sample
    return entries, metrics_by_file(named)


def _commit(parts: list[Any], directory: Path, target: Path, prefix: str, staging: bool) -> None:
    entries = [entry for part in parts for entry in part[1]]
    metrics = {name: m for part in parts for name, m in part[2].items()}
    write_text_atomic(directory / f"{prefix}_metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_text_atomic(directory / f"{prefix}_manifest.json", json.dumps(entries, indent=2) + "\n")
    if staging:
        os.chmod(directory, 0o755)  # mkdtemp makes 0700; a capture is ordinary data
        os.replace(directory, target)


def save_sharded_rollout(
    buffer: RolloutBuffer,
    directory: str | os.PathLike[str],
    group: Collective,
    *,
    prefix: str = "rollout_sample",
    compress: bool = True,
) -> Path:
    """Write every rank's ``buffer`` into one capture directory (module docstring); every rank
    calls it and gets the directory's path. Raises :class:`RolloutError` on every rank for a bad
    prefix or a ``directory`` that is a file, and when any rank failed to write its samples
    (the staging directory is then removed)."""
    target = Path(directory)
    error, where, staging = broadcast_object(
        group, _plan(target, prefix) if group.is_root else (None, "", False)
    )
    if error is not None:
        raise RolloutError(error)
    counts = all_gather_objects(group, len(buffer.samples))
    first = 1 + sum(counts[: group.rank])
    try:
        entries, metrics = _write_samples(buffer, Path(where), prefix, first, compress)
        part: tuple[str | None, Any, Any] = (None, entries, metrics)
    except (OSError, TypeError, ValueError) as exc:
        part = (f"rank {group.rank}: {exc}", [], {})
    parts = all_gather_objects(group, part)
    failures = [p[0] for p in parts if p[0] is not None]
    outcome: str | None = None
    if group.is_root:
        outcome = _finish(parts, failures, Path(where), target, prefix, staging)
    outcome = broadcast_object(group, outcome)
    if outcome is not None:
        raise RolloutError(f"sharded capture into {target} failed: {outcome}")
    return target


def _finish(
    parts: list[Any], failures: list[str], where: Path, target: Path, prefix: str, staging: bool
) -> str | None:
    try:
        if failures:
            return "; ".join(failures)
        _commit(parts, where, target, prefix, staging)
        return None
    except OSError as exc:
        return str(exc)
    finally:
        if staging and where.exists():
            shutil.rmtree(where, ignore_errors=True)


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
