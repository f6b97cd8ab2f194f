"""Mutation tests of every loader: a valid file, damaged at random (bytes flipped, cut short,
nesting or digits spliced in), either loads or is refused with a documented error type
(``TownletInputError``) — never a traceback of another type, a hang or a crash.

The default runs keep example counts modest so the suite stays fast; the ``slow``-marked
variant runs more per loader (150, or ``TOWNLET_MUTATIONS``: the 12,000-mutation check in
docs/errors.md is ``TOWNLET_MUTATIONS=1000 pytest -m slow tests/test_loader_mutations.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _loaders import LOADERS
from _replay_helpers import REFERENCE_ROOT, make_sample
from townlet.errors import TownletInputError
from townlet.policy.replay.io import save_replay_sample

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
TELEMETRY = REFERENCE_ROOT / "generated" / "ppo_v1_2_queue_conflict_bs1.jsonl"


def _sample_files(folder: Path, compress: bool) -> tuple[bytes, bytes]:
    npz, meta = save_replay_sample(make_sample(), folder / "s.npz", compress=compress)
    return npz.read_bytes(), meta.read_bytes()


def _checkpoint_bytes(folder: Path) -> bytes:
    pytest.importorskip("torch")
    from townlet.policy.nn.adam import adam_init
    from townlet.policy.nn.checkpoint import save_checkpoint
    from townlet.policy.nn.network import init_params
    from townlet.policy.nn.spec import NetworkSpec

    spec = NetworkSpec(feature_dim=3, action_dim=2, hidden_dim=4)
    params = init_params(spec, 0)
    path = folder / "c.pt"
    save_checkpoint(path, spec=spec, params=params, adam_state=adam_init(params), counters={"u": 1})
    return path.read_bytes()


def _promotion_bytes() -> bytes:
    from townlet.policy.training.services import promotion as pm
    from townlet.policy.training.services.promotion_io import promotion_state_to_dict

    state = pm.record_evaluation(pm.init_promotion_state(required_passes=1), "PASS", {"a": 1.0})
    return json.dumps(promotion_state_to_dict(state), indent=2).encode()


RUN_STATE = {
    "seed": 0,
    "stage_index": 1,
    "stopped": False,
    "warmup_pending": True,
    "results": [],
    "rollout_returns": [1.5],
    "stages": [{"cycle": 1, "mode": "bc", "epochs": 1, "bc_weight": 1.0}],
    "telemetry_lines": 2,
    "checkpoint": "checkpoints/stage_001.pt",
}


def _seeds(name: str, folder: Path) -> tuple[str, bytes]:
    """The file name and the valid contents each loader's mutations start from."""
    if name in ("npz", "npz_header"):
        return "s.npz", _sample_files(folder, compress=True)[0]
    if name == "sidecar":
        return "s.json", _sample_files(folder, compress=False)[1]
    if name == "manifest":
        _sample_files(folder, compress=False)
        return "m.json", json.dumps(
            {"samples": [{"sample": "s.npz", "metrics": {"r": 1}}]}
        ).encode()
    if name == "capture_metrics":
        return "metrics.json", json.dumps({"s.npz": {"reward_sum": 1.5, "ticks": 3}}).encode()
    if name == "telemetry":
        if not TELEMETRY.is_file():
            pytest.skip("reference telemetry not found")
        return "t.jsonl", TELEMETRY.read_bytes()
    if name == "baseline":
        return "b.json", json.dumps({"baseline_reward_mean": 1.0, "baseline_kl": 0.1}).encode()
    if name == "checkpoint":
        return "c.pt", _checkpoint_bytes(folder)
    if name == "promotion":
        return "promotion.json", _promotion_bytes()
    if name == "run_state":
        return "run_state.json", json.dumps(RUN_STATE).encode()
    if name == "config_yaml":
        return "c.yaml", (EXAMPLES / "anneal.yaml").read_bytes()
    return "c.toml", (EXAMPLES / "anneal.toml").read_bytes()


@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple[str, int, bytes]]:
    """Up to 4 edits: flip a byte, cut the file, or splice in nesting, digits or bad UTF-8."""
    splices = st.sampled_from(
        [b"[" * 3000, b"{" * 500, b"9" * 5000, b"1e400", b"\xff\xfe", b"\x00", b"-"]
    )
    kinds = st.sampled_from(["flip", "cut", "splice"])
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(kinds)
        at = draw(st.integers(0, max(size - 1, 0)))
        payload = draw(splices) if kind == "splice" else bytes([draw(st.integers(0, 255))])
        edits.append((kind, at, payload))
    return edits


def _apply(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, at, payload in edits:
        at = min(at, len(out))
        if kind == "flip" and at < len(out):
            out[at] = payload[0]
        elif kind == "cut":
            del out[at:]
        elif kind == "splice":
            out[at:at] = payload
    return bytes(out)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def _check(name: str, folder: Path) -> Callable[[list[tuple[str, int, bytes]]], None]:
    loader, _ = LOADERS[name]
    folder = folder / name
    folder.mkdir(exist_ok=True)
    file_name, seed = _seeds(name, folder)
    target = folder / file_name
    target.write_bytes(seed)
    loader(target)  # the unmutated file loads

    def run(edits: list[tuple[str, int, bytes]]) -> None:
        target.write_bytes(_apply(seed, edits))
        try:
            loader(target)
        except TownletInputError as exc:
            assert "\n" not in str(exc)

    return run


def _mutation_test(name: str, folder: Path, examples: int) -> None:
    run = _check(name, folder)
    size = len(_seeds(name, folder / name)[1])

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutations(size))
    def mutate(edits: list[tuple[str, int, bytes]]) -> None:
        run(edits)

    mutate()


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_mutated_files_raise_only_documented_errors(name: str, workdir: Path) -> None:
    _mutation_test(name, workdir, examples=25)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LOADERS))
def test_many_mutations_raise_only_documented_errors(name: str, workdir: Path) -> None:
    _mutation_test(name, workdir, examples=int(os.environ.get("TOWNLET_MUTATIONS", "150")))
