"""Periodic checkpoints and exact resume of an *online* PPO run (issue #17).

An online run's fold carries the PPO state and the environments. The state goes into
``resume.pt`` as for replay PPO; the environments cannot be saved (and are never pickled).
They need not be: a Gymnasium environment is deterministic given its reset seed and the
actions taken since (its autoresets draw from the generator that reset seeded), so the run
appends, at each checkpoint, one JSON line per update since the last one to
``resume_env.jsonl``: the update's actions ``(T, K)``, the episodes that ended in it and its
telemetry record. ``resume.pt`` records the byte size and sha256 of that file as it was at the
checkpoint, and the sha256 of the observations the next update starts from.

To resume, every copy is reset with the run's seeds and stepped through the recorded actions,
which brings back its position, its random generator and its episode counters; the episodes
replayed and the observations reached must equal the recorded ones, otherwise the environment
is not deterministic and the resume is refused (one line). The policy's own sampling needs no
saved state: update ``u`` samples from ``stream_generator(seed, ONLINE_ACTIONS, u)``.

Replaying costs one environment step per step already taken (no forward pass). Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from townlet._atomic import append_durable
from townlet._input_limits import MAX_TEXT_FILE_BYTES, loads_json, read_bytes, show_path
from townlet.dto.policy import PPOTrainingResult
from townlet.errors import ConfigError
from townlet.policy.training.fold import Sink

ENV_FILE = "resume_env.jsonl"


@attrs.frozen(kw_only=True, eq=False)
class ReplayedUpdate:
    """One finished update of an online run, as ``resume_env.jsonl`` holds it."""

    actions: NDArray[np.int64]
    episode_returns: tuple[float, ...]
    episode_lengths: tuple[int, ...]
    record: PPOTrainingResult


@attrs.frozen(kw_only=True, eq=False)
class OnlineStart:
    """Where a resumed online run starts: ``state`` (a ``PPOState``) after ``updates``, and
    the sha256 of the observations the next update starts from."""

    state: Any
    updates: tuple[ReplayedUpdate, ...]
    observations_sha256: str

    @property
    def done(self) -> int:
        """Updates already run."""
        return len(self.updates)


def observations_digest(observations: NDArray[np.float32]) -> str:
    """sha256 of the observations' shape and float32 bytes."""
    array = np.ascontiguousarray(observations, dtype=np.float32)
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()


def _line(index: int, output: Any) -> str:
    from townlet.dto.convert import to_dict

    record, traj = output
    entry = {
        "update": index,
        "actions": traj.actions.cpu().numpy().tolist(),
        "episode_returns": list(traj.episode_returns),
        "episode_lengths": list(traj.episode_lengths),
        "record": to_dict(record),
    }
    return json.dumps(entry, separators=(",", ":")) + "\n"


def online_checkpoint_sink(
    out: Path,
    *,
    every: int,
    total: int,
    extra: Callable[[int], Mapping[str, Any]],
    save: Callable[[Path, Any, Mapping[str, Any]], None],
) -> Sink:
    """The checkpoint sink of an online run: after every ``every``-th update (not the last),
    append the updates since the last checkpoint to ``out/resume_env.jsonl``, then save the
    PPO state with ``save(out/resume.pt, state, extra(index) + online facts)``. The env file
    must already be cut back to the checkpoint a resumed run starts from."""
    env_path = out / ENV_FILE
    prefix = b""
    if env_path.is_file():
        prefix = read_bytes(env_path, ConfigError, f"{show_path(env_path)}:")
    hasher, size = hashlib.sha256(prefix), len(prefix)
    pending: list[str] = []

    def sink(index: int, carry: Any, output: Any) -> None:
        nonlocal size
        pending.append(_line(index, output))
        if index % every != 0 or index >= total:
            return
        text = "".join(pending)
        append_durable(env_path, text)
        hasher.update(text.encode("utf-8"))
        size += len(text.encode("utf-8"))
        pending.clear()
        state, observations = carry
        online = {
            "env_bytes": size,
            "env_sha256": hasher.hexdigest(),
            "observations_sha256": observations_digest(observations),
        }
        save(out / "resume.pt", state, {**extra(index), "online": online})

    return sink


def _field(info: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in info:
        raise ConfigError(f"{show_path(path)}: resume.online.{key} is missing")
    return info[key]


def load_env_history(out: Path, info: object, done: int) -> tuple[ReplayedUpdate, ...]:
    """The ``done`` updates recorded in ``out/resume_env.jsonl`` up to the checkpoint whose
    ``online`` facts are ``info``; the file is cut back to that checkpoint. Raises
    ``ConfigError`` (one line) for a missing, changed or malformed file."""
    checkpoint = out / "resume.pt"
    if not isinstance(info, dict):
        raise ConfigError(f"{show_path(checkpoint)}: not an online run's checkpoint (no 'online')")
    size, digest = _field(info, "env_bytes", checkpoint), _field(info, "env_sha256", checkpoint)
    env_path = out / ENV_FILE
    label = f"{show_path(env_path)}:"
    data = read_bytes(env_path, ConfigError, label, limit=MAX_TEXT_FILE_BYTES)
    if not isinstance(size, int) or len(data) < size:
        raise ConfigError(f"{label} shorter than its checkpoint records; cannot resume")
    if hashlib.sha256(data[:size]).hexdigest() != digest:
        raise ConfigError(f"{label} changed since its checkpoint (sha256 differs); cannot resume")
    if len(data) > size:
        os.truncate(env_path, size)  # updates written after the checkpoint run again
    lines = data[:size].decode("utf-8").splitlines()
    if len(lines) != done:
        raise ConfigError(f"{label} holds {len(lines)} updates, its checkpoint {done}")
    return tuple(_update(line, f"{label} update {n}", n) for n, line in enumerate(lines, 1))


def _update(line: str, where: str, number: int) -> ReplayedUpdate:
    from townlet.dto.convert import from_dict

    entry = loads_json(line, ConfigError, where)
    if not isinstance(entry, dict) or entry.get("update") != number:
        raise ConfigError(f"{where}: expected an object with update = {number}")
    try:
        actions = np.asarray(entry["actions"], dtype=np.int64)
        returns = tuple(float(r) for r in entry["episode_returns"])
        lengths = tuple(int(n) for n in entry["episode_lengths"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{where}: malformed ({type(exc).__name__})") from None
    if actions.ndim != 2:
        raise ConfigError(f"{where}: actions must be a (steps, copies) table")
    record = from_dict(PPOTrainingResult, entry.get("record"), error=ConfigError, context=where)
    return ReplayedUpdate(
        actions=actions, episode_returns=returns, episode_lengths=lengths, record=record
    )


def replay_environments(source: Any, seed: int, start: OnlineStart) -> NDArray[np.float32]:
    """Reset ``source`` with ``seed`` and step it through ``start``'s actions; return the
    observations reached (the episodes that ended are ``start``'s, checked equal). Raises
    ``ConfigError`` when the environment does not come back to the checkpointed state (not
    deterministic)."""
    observations: NDArray[np.float32] = source.reset(seed)
    for number, update in enumerate(start.updates, 1):
        ended_r: list[float] = []
        ended_n: list[int] = []
        for row in update.actions:
            step = source.step(row)
            ended_r.extend(step.episode_returns)
            ended_n.extend(step.episode_lengths)
            observations = step.observations
        if (tuple(ended_r), tuple(ended_n)) != (update.episode_returns, update.episode_lengths):
            raise _not_restored(source, f"its episodes differ in update {number}")
    if observations_digest(observations) != start.observations_sha256:
        raise _not_restored(source, "its observations differ at the checkpoint")
    return observations


def _not_restored(source: Any, what: str) -> ConfigError:
    return ConfigError(
        f"environment {source.env_id!r} did not come back to its checkpointed state when its "
        f"recorded actions were replayed ({what}): it is not deterministic given its reset "
        "seed and actions, so this run cannot be resumed exactly"
    )
