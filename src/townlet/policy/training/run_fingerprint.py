"""The fingerprint of a run directory: what determines its result, recorded so that only the same
run resumes there.

A run directory (``run_anneal(out_dir=...)``, ``townlet-train anneal --out``, the demo) records
``run_fingerprint.json`` when its first stage starts: a flat mapping of dotted keys to JSON
values covering

* ``config.*`` — the resolved config, field by field (``promotion.*`` left out: it decides what
  happens to the result, not the result);
* ``seed`` — the run seed actually used (``--seed`` over ``config.seed``);
* ``schedule`` — the sorted stages (cycle, mode, epochs, bc_weight);
* ``data.bc`` / ``data.ppo`` / ``data.rollout.*`` — the data's identity: for files, each manifest
  and sample path with its size and SHA-256; for samples in memory, a SHA-256 of their arrays;
  for fresh rollouts, the plan (ticks, batch size; the town is in ``config.world``);
* ``init.*`` — the starting network (its parameter hash) and baselines when the run was given
  an initial state;
* ``townlet_version`` — the package version.

Resuming with a different fingerprint raises :class:`RunMismatchError`, which names the keys
that differ (old → new) and the way out in the caller's terms: a new run directory, or
``overwrite=True`` (CLI: ``--out NEW`` or ``--overwrite``). :func:`clear_run_dir` is what
overwriting does. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from townlet._atomic import write_text_atomic
from townlet._input_limits import loads_json, read_text, sha256_regular_file, show_path
from townlet.config import AnnealStage, Config
from townlet.dto.convert import to_dict
from townlet.errors import ConfigError, ReplayDataError

if TYPE_CHECKING:
    from townlet.policy.training.orchestrator import TrainingContext

FINGERPRINT_FILE = "run_fingerprint.json"
FINGERPRINT_SCHEMA = "1"
# What a run writes into its directory; overwriting removes these and nothing else (the
# promotion state and its history stay: evidence identity keeps a rerun from counting twice).
RUN_FILES: tuple[str, ...] = (
    FINGERPRINT_FILE,
    "run_state.json",
    "checkpoints",
    "telemetry.jsonl",
    "anneal_results.json",
    "anneal_summary.json",
    "checkpoint.pt",
)
_SHOWN = 60  # characters of a value shown in the mismatch message


class RunMismatchError(ConfigError):
    """A run directory holds another run: ``differences`` maps each differing key to its
    ``(recorded, current)`` values. The message gives the Python way out; :meth:`cli_message`
    the command line's."""

    def __init__(self, run_dir: Path, differences: Mapping[str, tuple[Any, Any]]) -> None:
        self.run_dir = run_dir
        self.differences = dict(differences)
        super().__init__(self.message("pass overwrite=True to start it again, or a new run_dir"))

    def message(self, way_out: str) -> str:
        """The mismatch with ``way_out`` as its last clause."""
        shown = "; ".join(
            f"{key}: {_short(old)} -> {_short(new)}" for key, (old, new) in self.differences.items()
        )
        return (
            f"{self.run_dir}: the run directory holds another run ({shown}); "
            f"resuming it would return that run's result: {way_out}"
        )

    def cli_message(self) -> str:
        """The message for ``townlet-train``: ``--out NEW`` or ``--overwrite``."""
        return self.message("use --out NEW for a new run, or --overwrite to start this one again")


def _short(value: Any) -> str:
    text = "(none)" if value is _ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


_ABSENT = object()


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = json.loads(json.dumps(value, default=str))


def _file_identity(path: Path) -> dict[str, Any]:
    digest = sha256_regular_file(path, ConfigError, f"{show_path(path)}: input file")
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": digest}


def _manifest_identity(path: Path) -> list[dict[str, Any]]:
    from townlet.policy.replay.manifest import read_manifest

    files = [_file_identity(path)]
    try:
        entries = read_manifest(path)
    except ReplayDataError:
        return files  # the stage reports a bad manifest itself; the manifest's hash is identity
    for entry in entries:
        for item in (entry.sample, entry.meta):
            if item is not None and item.is_file():
                files.append(_file_identity(item))
    return files


def _samples_digest(samples: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        for name in ("features", "actions", "old_log_probs", "value_preds", "rewards", "dones"):
            array = np.ascontiguousarray(getattr(sample, name))
            digest.update(f"{name}{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
        if getattr(sample, "map", None) is not None:
            digest.update(np.ascontiguousarray(sample.map).tobytes())
        digest.update(json.dumps(dict(sample.metadata), sort_keys=True, default=str).encode())
    return f"sha256:{digest.hexdigest()} ({len(samples)} samples)"


def data_identity(source: Any) -> Any:
    """The identity of a data source: a manifest path → its files (path, bytes, SHA-256);
    samples → a digest of their arrays; a replay dataset → its entries' files; None → None."""
    if source is None:
        return None
    if isinstance(source, str | Path) or hasattr(source, "__fspath__"):
        return _manifest_identity(Path(source))
    config = getattr(source, "config", None)
    if config is not None and hasattr(config, "entries"):
        return [_file_identity(e.sample) for e in config.entries if Path(e.sample).is_file()]
    samples = getattr(source, "samples", source)
    return _samples_digest(list(samples))


def _init_identity(ctx: TrainingContext) -> dict[str, Any]:
    from townlet.policy.training.services.promotion_io import policy_hash
    from townlet.policy.training.strategies.anneal.flags import baselines_to_dict

    state = ctx.state
    if state.params is None and state.stage_index == 0:
        return {}
    return {
        "init": {
            "params": None if state.params is None else policy_hash(state.params),
            "stage_index": state.stage_index,
            "warmup_pending": state.warmup_pending,
            "baselines": baselines_to_dict(state.baselines),
        }
    }


def run_fingerprint(
    config: Config,
    stages: Sequence[AnnealStage],
    data: Any,
    seed: int,
    init: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The flat fingerprint (dotted key → JSON value) of a run; see the module docstring.
    ``data`` is an :class:`~townlet.policy.training.strategies.anneal.data.AnnealData`."""
    from townlet import __version__

    resolved = to_dict(config)
    resolved.pop("promotion", None)
    bc = data.bc if data.bc is not None else config.training.bc.manifest
    rollout = data.rollout
    nested: dict[str, Any] = {
        "config": resolved,
        "seed": int(seed),
        "schedule": [[s.cycle, s.mode, s.epochs, s.bc_weight] for s in stages],
        "data": {
            "bc": data_identity(bc),
            "ppo": data_identity(data.ppo),
            "rollout": None
            if rollout is None
            else {"ticks": rollout.ticks, "batch_size": rollout.batch_size, **_world(rollout)},
        },
        **(init or {}),
        "townlet_version": __version__,
    }
    flat: dict[str, Any] = {}
    _flatten("", nested, flat)
    return flat


def _world(rollout: Any) -> dict[str, Any]:
    return {"world": to_dict(rollout.world)}


def fingerprint_differences(
    recorded: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """The keys whose values differ (a key on one side only counts), in sorted order, each with
    ``(recorded, current)`` (a missing side is shown as ``(none)``)."""
    keys = sorted(set(recorded) | set(current))
    return {
        key: (recorded.get(key, _ABSENT), current.get(key, _ABSENT))
        for key in keys
        if recorded.get(key, _ABSENT) != current.get(key, _ABSENT)
    }


def read_fingerprint(run_dir: Path) -> dict[str, Any] | None:
    """The fingerprint recorded in ``run_dir``, or None. Raises ``ConfigError`` for a file that
    is not a fingerprint."""
    path = run_dir / FINGERPRINT_FILE
    if not path.exists():
        return None
    where = f"{show_path(path)}: run fingerprint"
    data = loads_json(read_text(path, ConfigError, where), ConfigError, where)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise ConfigError(f"{path}: field 'keys': expected an object of fingerprint keys")
    keys: dict[str, Any] = data["keys"]
    return keys


def check_run_dir(run_dir: Path, fingerprint: Mapping[str, Any]) -> None:
    """Record ``fingerprint`` in a fresh ``run_dir``; in one that holds a run, raise
    :class:`RunMismatchError` unless the recorded fingerprint is the same. A run directory
    from before fingerprints (a ``run_state.json`` and no fingerprint) cannot be checked and is
    refused the same way."""
    recorded = read_fingerprint(run_dir)
    if recorded is None and (run_dir / "run_state.json").exists():
        recorded = {"run_fingerprint": "not recorded (an older townlet wrote this run)"}
    if recorded is not None:
        differences = fingerprint_differences(recorded, fingerprint)
        if differences:
            raise RunMismatchError(run_dir, differences)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {"schema": FINGERPRINT_SCHEMA, "keys": dict(fingerprint)}
    write_text_atomic(run_dir / FINGERPRINT_FILE, json.dumps(payload, indent=2) + "\n")


def ensure_same_run(ctx: TrainingContext, stages: Sequence[AnnealStage]) -> None:
    """The orchestrator's hook: check (or record) the fingerprint of ``ctx``'s run in
    ``ctx.run_dir`` before resuming from it (no run directory: nothing to do)."""
    if ctx.run_dir is None:
        return
    fingerprint = run_fingerprint(
        ctx.config, stages, ctx.data, ctx.state.seed, init=_init_identity(ctx)
    )
    check_run_dir(Path(ctx.run_dir), fingerprint)


def clear_run_dir(run_dir: str | Path) -> None:
    """Remove what a run wrote into ``run_dir`` (:data:`RUN_FILES`) so that a new run starts
    there; the promotion state and anything else stay."""
    root = Path(run_dir)
    for name in RUN_FILES:
        target = root / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def fingerprint_digest(fingerprint: Mapping[str, Any]) -> str:
    """A short stable digest of a fingerprint (the run's identity in promotion evidence)."""
    text = json.dumps(dict(fingerprint), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_evidence(run_dir: Path | None, policy_hash: str | None, seed: int) -> dict[str, Any]:
    """The promotion evidence of an anneal run's own evaluation: the candidate's
    ``policy_hash``, the digest of the fingerprint recorded in ``run_dir`` (None without one),
    and the run seed its stages' rollouts derive from. A rerun of the same run gives the same
    evidence, which the promotion state counts once."""
    from townlet.policy.training.services.promotion import make_evidence

    recorded = None if run_dir is None else read_fingerprint(run_dir)
    digest = None if recorded is None else fingerprint_digest(recorded)
    return make_evidence(policy_hash, digest, [seed])
