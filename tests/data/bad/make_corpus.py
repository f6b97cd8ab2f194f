"""Regenerate the malformed-input corpus in this folder (``python tests/data/bad/make_corpus.py``).

Each file is hostile or damaged input for one loader; ``index.json`` maps it to the loader,
the error type and a fragment of the one-line message expected (``tests/test_bad_inputs.py``
checks them). The files are committed; this script documents how each was made.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEEP = 5000  # far beyond MAX_NESTING_DEPTH (64) and the interpreter's recursion limit
DEEP_YAML = 1500  # PyYAML is slow; this is still beyond the recursion limit (1000)
INDEX: list[dict[str, str]] = []


def add(name: str, data: bytes | str, loader: str, error: str, expect: str) -> None:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    (HERE / name).write_bytes(raw)
    INDEX.append({"file": name, "loader": loader, "error": error, "expect": expect})


def _npz(arrays: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _sample_arrays(actions: Any = None) -> dict[str, Any]:
    t = 4
    return {
        "map": np.zeros((t, 1, 2, 2), np.float32),
        "features": np.zeros((t, 3), np.float32),
        "actions": np.zeros(t, np.int64) if actions is None else actions,
        "old_log_probs": np.zeros(t, np.float32),
        "value_preds": np.zeros(t + 1, np.float32),
        "rewards": np.zeros(t, np.float32),
        "dones": np.zeros(t, np.bool_),
    }


def _replace_member(data: bytes, member: str, payload: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            body = payload if info.filename == member else source.read(info.filename)
            target.writestr(info.filename, body)
    return out.getvalue()


def configs() -> None:
    add(
        "config_deep.toml",
        "x = " + "[" * DEEP + "]" * DEEP + "\n",
        "config",
        "ConfigError",
        "nested deeper than 64 levels",
    )
    add(
        "config_deep.yaml",
        "x: " + "[" * DEEP_YAML + "]" * DEEP_YAML + "\n",
        "config",
        "ConfigError",
        "nested deeper than 64 levels",
    )
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for level, name in enumerate("bcdefghij"):
        prev = "abcdefghij"[level]
        bomb.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    add(
        "config_alias_bomb.yaml",
        "\n".join(bomb) + "\n",
        "config",
        "ConfigError",
        "values (an alias bomb?)",
    )
    add(
        "config_big_int.toml",
        "seed = " + "9" * 5000 + "\n",
        "config",
        "ConfigError",
        "invalid TOML",
    )
    add(
        "config_lr_inf.toml",
        "[ppo]\nlearning_rate = inf\n",
        "config",
        "ConfigError",
        "ppo.learning_rate: expected a finite number, got inf",
    )
    add(
        "config_yaml_tag.yaml",
        "seed: !!python/object/apply:os.system ['true']\n",
        "config",
        "ConfigError",
        "invalid YAML: could not determine a constructor",
    )
    add(
        "config_bad_utf8.toml",
        b"seed = 1\n# \xff\xfe\n",
        "config",
        "ConfigError",
        "is not valid UTF-8",
    )


def sidecars() -> None:
    add(
        "sidecar_deep.json",
        "[" * DEEP + "]" * DEEP,
        "sidecar",
        "ReplayDataError",
        "nested deeper than 64 levels",
    )
    add(
        "sidecar_big_int.json",
        '{"action_dim": ' + "7" * 5000 + "}",
        "sidecar",
        "ReplayDataError",
        "is out of range",
    )
    add(
        "sidecar_overflow.json",
        '{"action_dim": 1e400}',
        "sidecar",
        "ReplayDataError",
        "is out of the float64 range",
    )
    add(
        "sidecar_bad_utf8.json",
        b'{"a": "\xc3\x28"}',
        "sidecar",
        "ReplayDataError",
        "is not valid UTF-8",
    )
    add("sidecar_list.json", "[1, 2]", "sidecar", "ReplayDataError", "must hold a JSON object")


def samples() -> None:
    good = _npz(_sample_arrays())
    add("npz_truncated.npz", good[: len(good) // 2], "npz", "ReplayDataError", "unreadable")
    add(
        "npz_not_zip.npz",
        b"PK\x03\x04 but not really a zip",
        "npz",
        "ReplayDataError",
        "unreadable",
    )
    damaged = bytearray(good)
    start = good.index(b"features.npy") + 60
    damaged[start : start + 40] = bytes(40)
    add("npz_bad_zlib.npz", bytes(damaged), "npz", "ReplayDataError", "unreadable")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (600_000, 1_000_000)}
    )
    add(
        "npz_huge_header.npz",
        _replace_member(good, "features.npy", header.getvalue()),
        "npz",
        "ReplayDataError",
        "declares 2400000000000 bytes but its archive member holds",
    )
    garbage = b"\x93NUMPY\x01\x00\x10\x00{'descr': <<<}  \n"
    add(
        "npz_garbage_header.npz",
        _replace_member(good, "actions.npy", garbage),
        "npz",
        "ReplayDataError",
        "unreadable",
    )
    uint64 = np.full(4, 2**64 - 1, np.uint64)
    add(
        "npz_uint64_actions.npz",
        _npz(_sample_arrays(uint64)),
        "npz",
        "ReplayDataError",
        "ReplaySample.actions must be < 100000",
    )
    add(
        "npz_object_array.npz",
        _npz({**_sample_arrays(), "rewards": np.array([{}], object)}),
        "npz",
        "ReplayDataError",
        "unreadable",
    )


def manifests() -> None:
    add(
        "manifest_nul.json", json.dumps(["a\0b.npz"]), "manifest", "ReplayDataError", "invalid path"
    )
    add("manifest_surrogate.json", '["\\ud800.npz"]', "manifest", "ReplayDataError", "invalid path")
    add(
        "manifest_long_name.json",
        json.dumps(["x" * 300 + ".npz"]),
        "manifest",
        "ReplayDataError",
        "longer than 255 bytes",
    )
    add(
        "manifest_deep.yaml",
        "- " + "[" * DEEP_YAML + "]" * DEEP_YAML + "\n",
        "manifest",
        "ReplayDataError",
        "nested deeper than 64 levels",
    )
    add(
        "manifest_bad_metrics.json",
        json.dumps({"samples": [{"sample": "a.npz", "metrics": 1}]}),
        "manifest",
        "ReplayDataError",
        "'metrics' must be a mapping",
    )


def telemetry() -> None:
    add(
        "telemetry_deep.jsonl",
        "[" * DEEP + "]" * DEEP + "\n",
        "telemetry",
        "TelemetryError",
        ":1: nested deeper than 64 levels",
    )
    add(
        "telemetry_bad_utf8.jsonl",
        b'{"epoch": 1, "x": "\xff"}\n',
        "telemetry",
        "TelemetryError",
        ":1 is not valid UTF-8",
    )
    add(
        "telemetry_big_int.jsonl",
        '{"epoch": ' + "1" * 4400 + "}\n",
        "telemetry",
        "TelemetryError",
        ":1: integer",
    )
    add(
        "telemetry_overflow.jsonl",
        '{"epoch": 1e400}\n',
        "telemetry",
        "TelemetryError",
        ":1: number 1e400 is out of the float64 range",
    )
    add(
        "baseline_deep.json",
        "[" * DEEP + "]" * DEEP,
        "baseline",
        "TelemetryError",
        "nested deeper than 64 levels",
    )


def states() -> None:
    add(
        "promotion_deep.json",
        "[" * DEEP + "]" * DEEP,
        "promotion",
        "PromotionError",
        "nested deeper than 64 levels",
    )
    add("promotion_list.json", "[]", "promotion", "PromotionError", "expected a JSON object")
    add(
        "run_state_negative_lines.json",
        json.dumps({"telemetry_lines": -10000, "stages": []}),
        "run_state",
        "CheckpointError",
        "'telemetry_lines': -10000 is out of range",
    )
    add(
        "run_state_negative_stage.json",
        json.dumps({"stage_index": -1, "stages": [{}]}),
        "run_state",
        "CheckpointError",
        "'stage_index': -1 is out of range",
    )
    add(
        "run_state_traversal.json",
        json.dumps({"checkpoint": "../../etc/passwd", "stages": []}),
        "run_state",
        "CheckpointError",
        "must name a file inside the run directory",
    )


def checkpoints() -> None:
    add(
        "checkpoint_pickle.pt",
        pickle.dumps({"header": print}),
        "checkpoint",
        "CheckpointError",
        "not a readable checkpoint (the safe loader refused it",
    )
    add(
        "checkpoint_garbage.pt",
        b"\x80\x02garbage",
        "checkpoint",
        "CheckpointError",
        "not a readable checkpoint",
    )


def main() -> None:
    for stale in HERE.iterdir():
        if stale.name not in ("make_corpus.py", "make_checkpoints.py"):
            stale.unlink()
    configs()
    sidecars()
    samples()
    manifests()
    telemetry()
    states()
    checkpoints()
    from make_checkpoints import checkpoint_cases  # needs torch

    for name, data, expect in checkpoint_cases():
        add(name, data, "checkpoint", "CheckpointError", expect)
    (HERE / "index.json").write_text(json.dumps(INDEX, indent=1) + "\n")


if __name__ == "__main__":
    main()
