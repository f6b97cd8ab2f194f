"""Hostile command lines (#17): a broad table of invocations of every command with damaged,
huge, nested, non-regular or out-of-range inputs. Each one must end with a documented exit code
(2: bad usage or input; 1: a failed run, or ``telemetry validate`` finding a bad log), one
bounded line on stderr and no traceback, within a time limit (no hang), and leave no temporary
or half-written file behind.

Most cases run in process through :func:`townlet.cli.main`; the ones that could take the test
process down if they regressed (torch thread counts) run in a subprocess and are marked slow.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from townlet.cli import main

torch = pytest.importorskip("torch")

BAD = Path(__file__).parent / "data" / "bad"
FIRST_LINE_LIMIT = 1000  # "townlet-train CMD: error: " + a bounded message (path <= 300)
CASE_SECONDS = 60


class HangError(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in the CLI eats it."""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with good inputs (a capture, a checkpoint, a telemetry log, a config) and
    hostile files of every kind."""
    root = tmp_path_factory.mktemp("hostile")
    quiet = ["--quiet"]
    assert (
        main(["capture", "--agents", "3", "--ticks", "20", "--out", str(root / "cap"), *quiet]) == 0
    )
    manifest = str(root / "cap" / "rollout_sample_manifest.json")
    assert (
        main(["bc", "--manifest", manifest, "--epochs", "1", "--out", str(root / "bc"), *quiet])
        == 0
    )
    log = str(root / "good.jsonl")
    assert (
        main(["ppo", "--capture-dir", str(root / "cap"), "--epochs", "1", "--log", log, *quiet])
        == 0
    )
    (root / "good.toml").write_text(
        "seed = 1\n[world]\nnum_agents = 3\n[training.bc]\nepochs = 1\n"
    )
    hostile = root / "h"
    hostile.mkdir()
    (hostile / "dir").mkdir()
    os.mkfifo(hostile / "fifo")
    os.symlink("loop_b", hostile / "loop_a")
    os.symlink("loop_a", hostile / "loop_b")
    (hostile / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (hostile / "deep_obj.json").write_text('{"a":' * 50_000 + "1" + "}" * 50_000)
    (hostile / "bigint.json").write_text('{"seed": ' + "9" * 5000 + "}")
    (hostile / "overflow.json").write_text('{"seed": 1e400, "epochs": 1e400}')
    (hostile / "bad_utf8.json").write_bytes(b'{"a": "\xff\xfe\xc3"}\n')
    (hostile / "garbage.bin").write_bytes(bytes(range(256)) * 64)
    (hostile / "empty.json").write_bytes(b"")
    (hostile / "afile").write_text("I am a file, not a directory\n")
    (hostile / "list.json").write_text("[1, 2, 3]")
    (hostile / "nan.json").write_text('{"seed": NaN, "learning_rate": Infinity}')
    return root


# Hostile file kinds: the path given to a file option (placeholders: {h} hostile dir).
KINDS: dict[str, str] = {
    "missing": "{h}/does_not_exist.json",
    "directory": "{h}/dir",
    "fifo": "{h}/fifo",
    "dev_zero": "/dev/zero",
    "symlink_loop": "{h}/loop_a",
    "nul_in_path": "{h}/a\0b.json",
    "long_name": "{h}/" + "n" * 300 + ".json",
    "under_a_file": "{h}/afile/x.json",
    "deep_json": "{h}/deep.json",
    "deep_object": "{h}/deep_obj.json",
    "huge_int": "{h}/bigint.json",
    "float_1e400": "{h}/overflow.json",
    "invalid_utf8": "{h}/bad_utf8.json",
    "binary_garbage": "{h}/garbage.bin",
    "json_list": "{h}/list.json",
}

# Commands with one file option left as "{f}" (the hostile path); "{ws}" is the workspace.
FILE_SLOTS: dict[str, list[str]] = {
    "bc_manifest": ["bc", "--manifest", "{f}", "--epochs", "1", "--out", "{out}"],
    "bc_config": ["bc", "--config", "{f}", "--epochs", "1", "--out", "{out}"],
    "ppo_sample": ["ppo", "--sample", "{f}", "--out", "{out}"],
    "ppo_manifest": ["ppo", "--manifest", "{f}", "--out", "{out}"],
    "ppo_config": ["ppo", "--config", "{f}", "--capture-dir", "{ws}/cap", "--out", "{out}"],
    "ppo_init": ["ppo", "--init", "{f}", "--capture-dir", "{ws}/cap", "--out", "{out}"],
    "anneal_config": ["anneal", "--config", "{f}", "--capture-dir", "{ws}/cap", "--out", "{out}"],
    "anneal_bc_manifest": [
        "anneal",
        "--config",
        "{ws}/good.toml",
        "--bc-manifest",
        "{f}",
        "--capture-dir",
        "{ws}/cap",
        "--out",
        "{out}",
    ],
    "evaluate_checkpoint": ["evaluate", "--checkpoint", "{f}", "--env", "town", "--episodes", "1"],
    "capture_config": ["capture", "--config", "{f}", "--ticks", "5", "--out", "{out}"],
    "capture_policy": ["capture", "--policy", "{f}", "--ticks", "5", "--out", "{out}"],
    "replay_manifest": ["replay", "--manifest", "{f}"],
    "replay_sample": ["replay", "--sample", "{f}"],
    "telemetry_validate": ["telemetry", "validate", "{f}"],
    "telemetry_baseline": ["telemetry", "validate", "{ws}/good.jsonl", "--baseline", "{f}"],
    "telemetry_convert": ["telemetry", "convert", "{f}", "--to", "1.0", "--output", "{out}.jsonl"],
    "telemetry_table": ["telemetry", "table", "{f}"],
    "promote_evaluate": ["promote", "evaluate", "--summary", "{f}"],
    "promote_record": ["promote", "record", "--run", "{out}", "--summary", "{f}"],
    "resume_dir": ["resume", "{f}"],
}

# Not every kind makes sense for every slot (a directory is a valid --capture-dir, an empty
# config is a valid config that would run a whole job): these pairs are skipped.
_SKIP = {("resume_dir", "directory")}


def _matrix() -> list[tuple[str, list[str], frozenset[int]]]:
    cases = []
    for slot, argv in FILE_SLOTS.items():
        for kind, path in KINDS.items():
            if (slot, kind) in _SKIP:
                continue
            codes = frozenset({1, 2}) if slot.startswith("telemetry_validate") else frozenset({2})
            cases.append((f"{slot}-{kind}", [a.replace("{f}", path) for a in argv], codes))
    return cases


def _corpus(name: str) -> str:
    return str(BAD / name)


# Named cases: corpus files in the commands that read them, numbers out of range, bad flags.
EXTRA: list[tuple[str, list[str], frozenset[int]]] = [
    ("ppo_env_rollout_steps_huge", ["ppo", "--env", "gymnasium:CartPole-v1", "--total-steps",
                                    "8", "--rollout-steps", str(10**15)], frozenset({1, 2})),
    ("capture_gym_copies_huge", ["capture", "--env", "gymnasium:CartPole-v1", "--agents",
                                 str(10**30), "--ticks", "5", "--out", "{out}"], frozenset({2})),
    ("resume_of_a_file", ["resume", "{ws}/h/afile"], frozenset({2})),
]  # fmt: skip

NAMED: list[tuple[str, list[str], frozenset[int]]] = EXTRA + (
    [
        (
            f"evaluate-{n}",
            ["evaluate", "--checkpoint", _corpus(n), "--env", "town", "--episodes", "1"],
            frozenset({2}),
        )
        for n in sorted(p.name for p in BAD.glob("checkpoint_*.pt"))
    ]
    + [
        (
            f"ppo_init-{n}",
            ["ppo", "--init", _corpus(n), "--capture-dir", "{ws}/cap", "--out", "{out}"],
            frozenset({2}),
        )
        for n in (
            "checkpoint_nan_weight.pt",
            "checkpoint_flipped_bit.pt",
            "checkpoint_pickle.pt",
            "checkpoint_float64.pt",
            "checkpoint_counters_list.pt",
        )
    ]
    + [
        (
            f"capture_policy-{n}",
            ["capture", "--policy", _corpus(n), "--ticks", "5", "--out", "{out}"],
            frozenset({2}),
        )
        for n in (
            "checkpoint_nan_weight.pt",
            "checkpoint_truncated.pt",
            "checkpoint_header_edited.pt",
        )
    ]
    + [
        (f"replay_sample-{n}", ["replay", "--sample", _corpus(n)], frozenset({2}))
        for n in sorted(p.name for p in BAD.glob("npz_*.npz"))
    ]
    + [
        (f"ppo_sample-{n}", ["ppo", "--sample", _corpus(n), "--out", "{out}"], frozenset({2}))
        for n in ("npz_uint64_actions.npz", "npz_huge_header.npz", "npz_bad_zlib.npz")
    ]
    + [
        (f"replay_manifest-{n}", ["replay", "--manifest", _corpus(n)], frozenset({2}))
        for n in sorted(p.name for p in BAD.glob("manifest_*"))
    ]
    + [
        (f"bc_config-{n}", ["bc", "--config", _corpus(n), "--epochs", "1"], frozenset({2}))
        for n in sorted(p.name for p in BAD.glob("config_*"))
    ]
    + [
        (f"telemetry_validate-{n}", ["telemetry", "validate", _corpus(n)], frozenset({1, 2}))
        for n in sorted(p.name for p in BAD.glob("telemetry_*"))
    ]
    + [
        (f"telemetry_table-{n}", ["telemetry", "table", _corpus(n)], frozenset({2}))
        for n in sorted(p.name for p in BAD.glob("telemetry_*"))
    ]
    + [
        (
            "replay_meta-sidecar_deep",
            [
                "replay",
                "--sample",
                "{ws}/cap/rollout_sample_agent_0_001.npz",
                "--meta",
                _corpus("sidecar_deep.json"),
            ],
            frozenset({2}),
        ),
        (
            "baseline_deep",
            [
                "telemetry",
                "validate",
                "{ws}/good.jsonl",
                "--baseline",
                _corpus("baseline_deep.json"),
            ],
            frozenset({2}),
        ),
        # Numbers out of range.
        (
            "bc_epochs_huge",
            ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json", "--epochs", "9" * 400],
            frozenset({2}),
        ),
        (
            "bc_epochs_1e400",
            ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json", "--epochs", "1e400"],
            frozenset({2}),
        ),
        (
            "bc_lr_nan",
            ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json", "--lr", "nan"],
            frozenset({2}),
        ),
        (
            "bc_lr_inf",
            ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json", "--lr", "inf"],
            frozenset({2}),
        ),
        (
            "bc_val_fraction_2",
            ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json", "--val-fraction", "2"],
            frozenset({2}),
        ),
        (
            "bc_seed_2_64",
            ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json", "--seed", str(2**64)],
            frozenset({2}),
        ),
        (
            "bc_seed_negative",
            ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json", "--seed", "-1"],
            frozenset({2}),
        ),
        (
            "bc_device_bogus",
            ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json", "--device", "bogus"],
            frozenset({2}),
        ),
        (
            "bc_device_cuda",
            ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json", "--device", "cuda:7"],
            frozenset({1, 2}),
        ),
        (
            "bc_checkpoint_every_0",
            [
                "bc",
                "--manifest",
                "{ws}/cap/rollout_sample_manifest.json",
                "--checkpoint-every",
                "0",
                "--out",
                "{out}",
            ],
            frozenset({2}),
        ),
        (
            "bc_out_is_a_file",
            [
                "bc",
                "--manifest",
                "{ws}/cap/rollout_sample_manifest.json",
                "--epochs",
                "1",
                "--out",
                "{ws}/h/afile",
            ],
            frozenset({2}),
        ),
        (
            "bc_out_under_a_file",
            [
                "bc",
                "--manifest",
                "{ws}/cap/rollout_sample_manifest.json",
                "--epochs",
                "1",
                "--out",
                "{ws}/h/afile/sub",
            ],
            frozenset({2}),
        ),
        (
            "ppo_out_is_a_file",
            ["ppo", "--capture-dir", "{ws}/cap", "--out", "{ws}/h/afile"],
            frozenset({2}),
        ),
        (
            "ppo_log_is_a_fifo",
            ["ppo", "--capture-dir", "{ws}/cap", "--log", "{ws}/h/fifo"],
            frozenset({2}),
        ),
        (
            "ppo_log_is_a_directory",
            ["ppo", "--capture-dir", "{ws}/cap", "--log", "{ws}/h/dir"],
            frozenset({2}),
        ),
        (
            "ppo_epochs_negative",
            ["ppo", "--capture-dir", "{ws}/cap", "--epochs", "-5"],
            frozenset({2}),
        ),
        (
            "ppo_batch_size_0",
            ["ppo", "--capture-dir", "{ws}/cap", "--batch-size", "0"],
            frozenset({2}),
        ),
        (
            "ppo_lr_inf",
            ["ppo", "--capture-dir", "{ws}/cap", "--ppo-learning-rate", "inf"],
            frozenset({2}),
        ),
        (
            "ppo_clip_nan",
            ["ppo", "--capture-dir", "{ws}/cap", "--ppo-clip-param", "nan"],
            frozenset({2}),
        ),
        (
            "ppo_log_frequency_0",
            ["ppo", "--capture-dir", "{ws}/cap", "--log-frequency", "0"],
            frozenset({2}),
        ),
        (
            "ppo_env_total_steps_0",
            ["ppo", "--env", "gymnasium:CartPole-v1", "--total-steps", "0"],
            frozenset({2}),
        ),
        (
            "ppo_env_unknown",
            ["ppo", "--env", "gymnasium:Nope-v9", "--total-steps", "8"],
            frozenset({2}),
        ),
        (
            "ppo_env_num_envs_huge",
            [
                "ppo",
                "--env",
                "gymnasium:CartPole-v1",
                "--total-steps",
                "8",
                "--num-envs",
                str(10**30),
            ],
            frozenset({2}),
        ),
        (
            "ppo_env_checkpoint_every_no_out",
            [
                "ppo",
                "--env",
                "gymnasium:CartPole-v1",
                "--total-steps",
                "8",
                "--checkpoint-every",
                "1",
            ],
            frozenset({2}),
        ),
        ("ppo_capture_dir_is_a_file", ["ppo", "--capture-dir", "{ws}/h/afile"], frozenset({2})),
        ("ppo_capture_dir_empty", ["ppo", "--capture-dir", "{ws}/h/dir"], frozenset({2})),
        (
            "capture_agents_200000",
            ["capture", "--agents", "200000", "--ticks", "100000", "--out", "{out}"],
            frozenset({2}),
        ),
        ("capture_agents_0", ["capture", "--agents", "0", "--out", "{out}"], frozenset({2})),
        ("capture_ticks_negative", ["capture", "--ticks", "-1", "--out", "{out}"], frozenset({2})),
        ("capture_seed_2_64", ["capture", "--seed", str(2**64), "--out", "{out}"], frozenset({2})),
        (
            "capture_out_is_a_file",
            ["capture", "--ticks", "5", "--out", "{ws}/h/afile"],
            frozenset({2}),
        ),
        (
            "capture_prefix_traversal",
            ["capture", "--ticks", "5", "--out", "{out}", "--prefix", "../../escape"],
            frozenset({2}),
        ),
        (
            "capture_prefix_nul",
            ["capture", "--ticks", "5", "--out", "{out}", "--prefix", "a\0b"],
            frozenset({2}),
        ),
        (
            "capture_compress_level_99",
            ["capture", "--ticks", "5", "--out", "{out}", "--compress-level", "99"],
            frozenset({2}),
        ),
        (
            "capture_writers_negative",
            ["capture", "--ticks", "5", "--out", "{out}", "--writers", "-1"],
            frozenset({2}),
        ),
        ("capture_env_bogus", ["capture", "--env", "bogus", "--out", "{out}"], frozenset({2})),
        (
            "evaluate_episodes_0",
            [
                "evaluate",
                "--checkpoint",
                "{ws}/bc/checkpoint.pt",
                "--env",
                "town",
                "--episodes",
                "0",
            ],
            frozenset({2}),
        ),
        (
            "evaluate_env_bogus",
            ["evaluate", "--checkpoint", "{ws}/bc/checkpoint.pt", "--env", "bogus"],
            frozenset({2}),
        ),
        (
            "evaluate_town_ckpt_on_cartpole",
            [
                "evaluate",
                "--checkpoint",
                "{ws}/bc/checkpoint.pt",
                "--env",
                "gymnasium:CartPole-v1",
                "--episodes",
                "1",
            ],
            frozenset({2}),
        ),
        (
            "replay_batch_size_0",
            ["replay", "--capture-dir", "{ws}/cap", "--batch-size", "0"],
            frozenset({2}),
        ),
        (
            "replay_seed_huge",
            ["replay", "--capture-dir", "{ws}/cap", "--seed", "9" * 100],
            frozenset({2}),
        ),
        (
            "anneal_batch_size_0",
            [
                "anneal",
                "--config",
                "{ws}/good.toml",
                "--capture-dir",
                "{ws}/cap",
                "--batch-size",
                "0",
            ],
            frozenset({2}),
        ),
        (
            "anneal_rollout_ticks_negative",
            ["anneal", "--config", "{ws}/good.toml", "--rollout-ticks", "-3"],
            frozenset({2}),
        ),
        (
            "anneal_out_is_a_file",
            [
                "anneal",
                "--config",
                "{ws}/good.toml",
                "--capture-dir",
                "{ws}/cap",
                "--out",
                "{ws}/h/afile",
            ],
            frozenset({2}),
        ),
        ("demo_seeds_garbage", ["demo", "--seeds", "1,x", "--out", "{out}"], frozenset({2})),
        ("demo_seeds_repeated", ["demo", "--seeds", "1,1", "--out", "{out}"], frozenset({2})),
        ("demo_seed_negative", ["demo", "--seed", "-4", "--out", "{out}"], frozenset({2})),
        ("demo_jobs_0", ["demo", "--jobs", "0", "--out", "{out}"], frozenset({2})),
        ("demo_out_is_a_file", ["demo", "--seed", "1", "--out", "{ws}/h/afile"], frozenset({2})),
        (
            "promote_status_no_run",
            ["promote", "status", "--run", "{ws}/h/does_not_exist"],
            frozenset({0, 2}),
        ),
        (
            "promote_promote_bad_checkpoint",
            [
                "promote",
                "promote",
                "--run",
                "{out}",
                "--checkpoint",
                _corpus("checkpoint_garbage.pt"),
            ],
            frozenset({2}),
        ),
        (
            "promote_promote_fifo_checkpoint",
            ["promote", "promote", "--run", "{out}", "--checkpoint", "{ws}/h/fifo"],
            frozenset({2}),
        ),
        (
            "promote_gate_margin_nan",
            [
                "promote",
                "gate",
                "--run",
                "{out}",
                "--candidate-returns",
                "1,2,3",
                "--incumbent-returns",
                "1,2,3",
                "--margin",
                "nan",
            ],
            frozenset({2}),
        ),
        (
            "promote_gate_returns_garbage",
            [
                "promote",
                "gate",
                "--run",
                "{out}",
                "--candidate-returns",
                "1e400,x",
                "--incumbent-returns",
                "1",
                "--margin",
                "0",
            ],
            frozenset({2}),
        ),
        (
            "promote_record_required_passes_negative",
            [
                "promote",
                "record",
                "--run",
                "{out}",
                "--summary",
                "{h}/list.json",
                "--required-passes",
                "-2",
            ],
            frozenset({2}),
        ),
        (
            "telemetry_plot_out_is_a_dir",
            ["telemetry", "plot", "{ws}/good.jsonl", "--out", "{h}/dir"],
            frozenset({2}),
        ),
        (
            "telemetry_convert_output_is_a_dir",
            ["telemetry", "convert", "{ws}/good.jsonl", "--to", "1.0", "--output", "{h}/dir"],
            frozenset({2}),
        ),
        (
            "telemetry_table_keys_garbage",
            ["telemetry", "table", "{ws}/good.jsonl", "--keys", "\udcff,,"],
            frozenset({0, 2}),
        ),
        (
            "telemetry_validate_drift_nan",
            [
                "telemetry",
                "validate",
                "{ws}/good.jsonl",
                "--baseline",
                "{ws}/good.jsonl",
                "--drift-threshold",
                "nan",
            ],
            frozenset({2}),
        ),
        ("run_mode_replay_no_data", ["run", "--mode", "replay"], frozenset({2})),
        (
            "run_replay_sample_fifo",
            ["run", "--mode", "replay", "--replay-sample", "{ws}/h/fifo"],
            frozenset({2}),
        ),
        ("unknown_command", ["explode"], frozenset({2})),
        ("unknown_option", ["bc", "--frobnicate"], frozenset({2})),
        (
            "dist_timeout_negative",
            ["--dist-timeout", "-1", "promote", "status", "--run", "{out}"],
            frozenset({0, 2}),
        ),
    ]
)


def _fill(argv: list[str], ws: Path, out: Path) -> list[str]:
    return [
        a.replace("{ws}", str(ws)).replace("{h}", str(ws / "h")).replace("{out}", str(out))
        for a in argv
    ]


@contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise HangError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _temp_files(*roots: Path) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found += [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    return found


_FINAL_OUTPUTS = ("checkpoint.pt", "result.json", "summary.json", "rollout_sample_manifest.json")


def _run_case(
    argv: list[str], codes: frozenset[int], ws: Path, out: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    capsys.readouterr()
    try:
        with _time_limit(CASE_SECONDS):
            try:
                code = main(_fill(argv, ws, out))
            except SystemExit as exc:  # argparse's own usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err, err[-2000:]
    assert code in codes, (code, err[:500])
    lines = err.splitlines()
    if code != 0:
        assert lines, "a failure says why on stderr"
        assert len(lines[0]) <= FIRST_LINE_LIMIT, lines[0][:200]
        assert len(lines) <= 3, lines[:5]  # argparse: usage line + error line
        assert not [name for name in _FINAL_OUTPUTS if (out / name).exists()], out
    assert not _temp_files(ws, out), _temp_files(ws, out)
    return err


ALL_CASES = _matrix() + NAMED


def test_the_table_is_broad() -> None:
    commands = {argv[0] if not argv[0].startswith("--") else argv[2] for _, argv, _ in ALL_CASES}
    assert len(ALL_CASES) >= 150
    assert commands >= {"bc", "ppo", "anneal", "capture", "evaluate", "replay", "telemetry",
                        "promote", "resume", "demo", "run"}  # fmt: skip


@pytest.mark.parametrize(("name", "argv", "codes"), ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_hostile_invocation(
    name: str,
    argv: list[str],
    codes: frozenset[int],
    ws: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _run_case(argv, codes, ws, tmp_path / "out", capsys)


def test_promote_evaluate_reads_a_deeply_nested_summary_from_stdin(
    monkeypatch: pytest.MonkeyPatch, ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("[" * 100_000 + "]" * 100_000))
    err = _run_case(["promote", "evaluate", "--summary", "-"], frozenset({2}), ws, tmp_path, capsys)
    assert "nested deeper than" in err


def test_a_demo_run_state_that_would_erase_telemetry_is_refused(
    monkeypatch: pytest.MonkeyPatch, ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    shutil.copy(BAD / "run_state_negative_lines.json", out / "run_state.json")
    (out / "telemetry.jsonl").write_text((ws / "good.jsonl").read_text())
    argv = ["demo", "--seed", "1", "--quick", "--quiet", "--no-plot", "--out", str(out)]
    _run_case(argv, frozenset({2}), ws, out, capsys)
    assert (out / "telemetry.jsonl").read_text() == (ws / "good.jsonl").read_text()


def test_an_anneal_run_state_with_a_negative_stage_index_is_refused_untouched(
    ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "anneal"
    config = tmp_path / "anneal.toml"
    config.write_text(
        "seed = 1\n[world]\nnum_agents = 3\n[training.bc]\nepochs = 1\n"
        '[[training.anneal_schedule]]\ncycle = 0\nmode = "bc"\n'
        '[[training.anneal_schedule]]\ncycle = 1\nmode = "ppo"\n'
    )
    argv = ["anneal", "--config", str(config), "--capture-dir", "{ws}/cap", "--bc-manifest",
            "{ws}/cap/rollout_sample_manifest.json", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(_fill(argv, ws, out)) == 0
    state = json.loads((out / "run_state.json").read_text())
    state["stage_index"] = -1
    (out / "run_state.json").write_text(json.dumps(state))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    err = _run_case(argv, frozenset({2}), ws, tmp_path / "unused", capsys)
    assert not _temp_files(out)
    assert "'stage_index'" in err and "out of range" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_an_anneal_run_dir_whose_telemetry_is_a_fifo_is_refused_not_waited_on(
    ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from townlet.policy.training.orchestrator import _truncate_lines

    os.mkfifo(tmp_path / "telemetry.jsonl")
    with _time_limit(20), pytest.raises(Exception) as info:
        _truncate_lines(tmp_path / "telemetry.jsonl", 3)
    assert "anneal telemetry is not a regular file (a FIFO)" in str(info.value)
    short = tmp_path / "short.jsonl"
    short.write_text("{}\n{}\n")
    with pytest.raises(Exception, match="has 2 lines, fewer than the 5 its run state records"):
        _truncate_lines(short, 5)
    assert short.read_text() == "{}\n{}\n"


_SUBPROCESS = [
    ("threads_1000000", ["bc", "--manifest", "{ws}/cap/rollout_sample_manifest.json",
                         "--epochs", "1", "--threads", "1000000"]),
    ("threads_0", ["ppo", "--capture-dir", "{ws}/cap", "--threads", "0"]),
    ("threads_negative", ["capture", "--ticks", "5", "--out", "{out}", "--threads", "-8"]),
    ("evaluate_threads_huge", ["evaluate", "--checkpoint", "{ws}/bc/checkpoint.pt", "--env",
                               "town", "--threads", str(2**40)]),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("name", "argv"), _SUBPROCESS, ids=[c[0] for c in _SUBPROCESS])
def test_hostile_invocation_in_a_subprocess(
    name: str, argv: list[str], ws: Path, tmp_path: Path
) -> None:
    code = "import sys; from townlet.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, *_fill(argv, ws, tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-500:])  # not a crash (< 0)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) <= 3
