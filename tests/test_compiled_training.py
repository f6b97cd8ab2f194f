"""The compile setting in whole runs: the one ppo_epoch, train_ppo, online PPO, BC and the CLI.

Off CUDA, ``cudagraph`` falls back to the eager update with one warning and the run is exactly
the default one; the CUDA-graph buffer protocol itself runs here through ``emulate_graphs``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import attrs
import pytest

torch = pytest.importorskip("torch")

from _replay_helpers import make_sample  # noqa: E402
from townlet.cli import main  # noqa: E402
from townlet.config import PPOConfig  # noqa: E402
from townlet.errors import CompileFallbackWarning  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.replay import InMemoryReplayDataset, save_replay_sample  # noqa: E402
from townlet.policy.training.strategies.ppo.compiled import make_ppo_update  # noqa: E402
from townlet.policy.training.strategies.ppo.epoch import ppo_epoch  # noqa: E402
from townlet.policy.training.strategies.ppo.online import train_ppo_online  # noqa: E402
from townlet.policy.training.strategies.ppo.replay import (  # noqa: E402
    epoch_data,
    prepare_batches,
)
from townlet.policy.training.strategies.ppo.step import init_ppo_state  # noqa: E402
from townlet.policy.training.strategies.ppo.train import train_ppo  # noqa: E402

NO_CUDA = not torch.cuda.is_available()
SMALL = NetworkSpec(map_shape=(2, 3, 3), feature_dim=4, action_dim=3, hidden_dim=16)
# 2 batches of 2 samples × 7 steps = 14 rows, minibatches of 4: a short last one (2 rows).
CFG = PPOConfig(mini_batch_size=4, num_mini_batches=3)


def _dataset() -> InMemoryReplayDataset:
    return InMemoryReplayDataset([make_sample(7, seed=i) for i in range(4)], batch_size=2)


def _without_durations(record: Any) -> dict[str, Any]:
    data = dict(record.to_dict())
    data.pop("epoch_duration_sec", None)
    data.pop("duration_sec", None)
    return data


@pytest.mark.parametrize("value_only", [False, True])
def test_one_ppo_epoch_with_the_graph_protocol_equals_eager(value_only: bool) -> None:
    prepared = prepare_batches(list(_dataset().batches(0)), CFG, label="toy")
    data = epoch_data(prepared, 0, value_only=value_only)
    state = init_ppo_state(SMALL, seed=2)
    update = make_ppo_update("cudagraph", emulate_graphs=True)
    eager_state, eager_stats = ppo_epoch(state, data, CFG)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        graph_state, graph_stats = ppo_epoch(state, data, CFG, minibatch_update=update)
        # a second epoch replays the variants made in the first
        ppo_epoch(
            graph_state,
            epoch_data(prepared, 1, value_only=value_only),
            CFG,
            minibatch_update=update,
        )
    assert graph_state.updates == eager_state.updates == len(eager_stats) == 8
    assert [s.transitions for s in graph_stats] == [4, 4, 4, 2, 4, 4, 4, 2]
    for ours, theirs in zip(graph_stats, eager_stats, strict=True):
        for field in attrs.fields(type(ours)):
            assert getattr(ours, field.name) == pytest.approx(
                getattr(theirs, field.name), rel=1e-5, abs=1e-6
            )
    for k in eager_state.params:
        torch.testing.assert_close(graph_state.params[k], eager_state.params[k])


@pytest.mark.skipif(not NO_CUDA, reason="the fallback is what happens without CUDA")
def test_train_ppo_with_cudagraph_off_cuda_is_the_default_run_and_warns_once() -> None:
    base = train_ppo(_dataset(), cfg=CFG, epochs=2, seed=1, spec=SMALL, value_only_epochs=1)
    with pytest.warns(CompileFallbackWarning) as caught:
        other = train_ppo(
            _dataset(),
            cfg=attrs.evolve(CFG, compile="cudagraph"),
            epochs=2,
            seed=1,
            spec=SMALL,
            value_only_epochs=1,
            device="auto",
        )
    assert len(caught) == 1
    assert [_without_durations(r) for r in other.results] == [
        _without_durations(r) for r in base.results
    ]
    for k, value in base.state.params.items():
        assert torch.equal(value, other.state.params[k])


@pytest.mark.skipif(not NO_CUDA, reason="the fallback is what happens without CUDA")
def test_online_ppo_with_compile_auto_off_cuda_is_eager_without_a_warning() -> None:
    # auto means eager off CUDA: nothing to fall back from, so no warning at all.
    cfg = PPOConfig(num_epochs=2, mini_batch_size=64, num_mini_batches=4)
    base = train_ppo_online("CartPole-v1", 256, 2, 64, cfg, 0, hidden_dim=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        auto = train_ppo_online(
            "CartPole-v1", 256, 2, 64, attrs.evolve(cfg, compile="auto"), 0, hidden_dim=16
        )
    with pytest.warns(CompileFallbackWarning):
        graph = train_ppo_online(
            "CartPole-v1", 256, 2, 64, attrs.evolve(cfg, compile="cudagraph"), 0, hidden_dim=16
        )
    expected = [_without_durations(r) for r in base.history]
    assert [_without_durations(r) for r in auto.history] == expected
    assert [_without_durations(r) for r in graph.history] == expected


@pytest.mark.skipif(not NO_CUDA, reason="the fallback is what happens without CUDA")
def test_cli_prints_the_fallback_as_one_line_and_the_same_record(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    npz, _ = save_replay_sample(make_sample(9), tmp_path / "s.npz")
    runs = []
    for extra in ([], ["--compile", "cudagraph"]):
        code = main(["ppo", "--sample", str(npz), "--seed", "3", "--quiet", *extra])
        out = capsys.readouterr()
        assert code == 0, out.err
        runs.append((json.loads(out.out), out.err))
    (base, base_err), (other, other_err) = runs
    assert base_err == ""
    assert other_err.splitlines() == [
        "townlet-train ppo: warning: compile=cudagraph: cudagraph needs a CUDA device, the "
        "parameters are on cpu; the minibatch update runs eagerly"
    ]
    for record in (base, other):
        record.pop("epoch_duration_sec")
        record.pop("duration_sec")
    assert other == base


@pytest.mark.slow
def test_train_ppo_with_inductor_equals_eager_to_1e5() -> None:
    # torch.compile on CPU: a C++ compiler and tens of seconds per minibatch shape.
    base = train_ppo(_dataset(), cfg=CFG, epochs=2, seed=1, spec=SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        other = train_ppo(
            _dataset(), cfg=attrs.evolve(CFG, compile="inductor"), epochs=2, seed=1, spec=SMALL
        )
    for ours, theirs in zip(other.results, base.results, strict=True):
        for key, value in _without_durations(theirs).items():
            if isinstance(value, float):
                assert _without_durations(ours)[key] == pytest.approx(value, rel=1e-5, abs=1e-6)
    for k, value in base.state.params.items():
        torch.testing.assert_close(other.state.params[k], value, rtol=1e-5, atol=1e-5)
