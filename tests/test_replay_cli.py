"""``townlet-train replay``: JSON summaries and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from _replay_helpers import PHASE4, make_sample, reference_root
from townlet.cli import main
from townlet.policy.replay import save_replay_sample


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["replay", *argv])
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else out.out, out.err


def test_capture_dir_summary(capsys: pytest.CaptureFixture[str]) -> None:
    reference_root()
    directory = PHASE4 / "queue_conflict"
    code, summary, _ = _run(capsys, "--capture-dir", str(directory), "--batch-size", "2")
    assert code == 0
    assert summary["source"] == {"capture_dir": str(directory)}
    assert summary["label"] == "queue_conflict"
    assert (summary["samples"], summary["batches"], summary["batch_size"]) == (3, 2, 2)
    assert summary["buckets"] == [
        {
            "samples": 3,
            "timesteps": 60,
            "map_shape": [4, 11, 11],
            "feature_dim": 36,
            "value_pred_steps": 61,
        }
    ]
    assert summary["action_dim"] == 4
    assert set(summary["conflict_stats"]) == {
        "rivalry_max_mean_avg",
        "rivalry_max_max_avg",
        "rivalry_avoid_count_mean_avg",
        "rivalry_avoid_count_max_avg",
    }
    assert summary["baseline_metrics"]["reward_sum"] == -36.0


def test_manifest_with_root_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    root = reference_root()
    manifest = root / "data" / "bc_datasets" / "manifests" / "idle_v1.json"
    code, summary, _ = _run(
        capsys,
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--batch-size",
        "3",
        "--drop-last",
        "--shuffle",
        "--seed",
        "4",
        "--streaming",
    )
    assert code == 2  # two samples, B=3, drop_last: nothing to yield
    code, summary, _ = _run(
        capsys,
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--batch-size",
        "2",
        "--streaming",
    )
    assert code == 0 and summary["batches"] == 1 and summary["samples"] == 2
    assert summary["buckets"][0]["feature_dim"] == 68


def test_single_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npz, meta = save_replay_sample(make_sample(5), tmp_path / "one.npz")
    moved = tmp_path / "elsewhere.json"
    meta.rename(moved)
    code, summary, _ = _run(capsys, "--sample", str(npz), "--meta", str(moved))
    assert code == 0
    assert summary["samples"] == 1 and summary["batches"] == 1
    assert summary["source"]["metrics"]["timesteps"] == 5.0
    assert summary["label"] == "one"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--sample", "/nonexistent/x.npz"], "x.npz not found"),
        (["--manifest", "/nonexistent/m.json"], "m.json not found"),
        (["--capture-dir", "/nonexistent"], "has no rollout_sample_manifest.json"),
        (["--manifest", "m.json", "--meta", "x.json"], "--meta needs --sample"),
        (["--sample", "x.npz", "--root", "/"], "--root applies to --manifest only"),
        (["--sample", "x.npz", "--batch-size", "0"], "--batch-size must be positive"),
        (["--sample", "x.npz", "--seed", "-1"], "--seed must be >= 0"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("townlet-train replay: error:")
    assert fragment in err


def test_bad_sample_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    code, _, err = _run(capsys, "--sample", str(tmp_path / "bad.npz"))
    assert code == 2 and "bad.npz" in err and err.count("\n") == 1


def test_source_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay"])
    assert exc.value.code == 2
    assert "one of the arguments" in capsys.readouterr().err
