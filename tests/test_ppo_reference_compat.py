"""``PPOConfig.reference_compat``: the reference's minibatch order and action_dim, which
reproduce its golden ``tests/golden/ppo_social`` run (spec reference-ppo §5, §2.4, §18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")


from _replay_helpers import make_sample, reference_root  # noqa: E402
from townlet.config import PPOConfig  # noqa: E402
from townlet.dto.telemetry import telemetry_line  # noqa: E402
from townlet.policy.replay import (  # noqa: E402
    InMemoryReplayDataset,
    ReplayEventCounts,
    load_replay_sample,
)
from townlet.policy.training.strategies import minibatch_order  # noqa: E402
from townlet.policy.training.strategies.ppo import train_ppo  # noqa: E402

COMPAT = PPOConfig(reference_compat=True)


def _golden() -> tuple[InMemoryReplayDataset, dict[str, Any], Path]:
    """The reference test's dataset (test_ppo_social_chat_drift): its stored sample, its
    metrics plus ``sample_count`` as the baseline, one chat success of quality 0.8."""
    directory = reference_root() / "tests" / "golden" / "ppo_social"
    sample = load_replay_sample(directory / "social_sample.npz")
    dataset = InMemoryReplayDataset(
        [sample],
        baseline_metrics={**sample.metadata["metrics"], "sample_count": 1.0},
        event_counts=ReplayEventCounts(chat_success_events=1, chat_quality_sum=0.8),
    )
    baseline = json.loads((directory / "baseline.json").read_text())
    return dataset, baseline, directory


def test_reference_compat_reproduces_the_golden_ppo_social_run(tmp_path: Path) -> None:
    dataset, golden, _ = _golden()
    log = tmp_path / "social_chat.jsonl"
    run = train_ppo(dataset, epochs=1, seed=0, cfg=COMPAT, log_path=log)
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert line == telemetry_line(run.result)
    assert set(line) == set(golden)
    assert line["telemetry_version"] == 1.2
    for key, expected in golden.items():
        if key == "epoch_duration_sec":
            continue
        if isinstance(expected, str):
            assert line[key] == expected, key
        else:
            assert line[key] == pytest.approx(expected, rel=0, abs=1e-6), key


def test_without_the_switch_the_run_is_townlets_own() -> None:
    dataset, golden, _ = _golden()
    ours = telemetry_line(train_ppo(dataset, epochs=1, seed=0).result)
    # The sidecar's action_dim 4 sizes the head (entropy over 4 actions, not ln 3) and the
    # seeded order differs: the losses are not the golden ones.
    assert abs(ours["loss_entropy"] - golden["loss_entropy"]) > 1e-3
    assert abs(ours["kl_divergence_max"] - golden["kl_divergence_max"]) > 1e-3


def test_reference_action_dim_ignores_the_sidecar() -> None:
    dataset, _, _ = _golden()
    batches = list(dataset.batches(0))
    assert minibatch_order.run_data_shape(batches, PPOConfig()).action_dim == 4
    assert minibatch_order.run_data_shape(batches, COMPAT).action_dim == 3


def test_reference_order_is_one_default_generator_drawn_in_sequence() -> None:
    sizes = (3, 5, 4)
    sequential = torch.Generator()
    expected = [torch.randperm(sizes[k % 3], generator=sequential) for k in range(9)]
    for draw in (0, 4, 5, 8, 2, 7):  # out of order: the memo must not change the answer
        generator = minibatch_order.reference_generator(draw, sizes)
        got = torch.randperm(sizes[draw % 3], generator=generator)
        assert torch.equal(got, expected[draw]), draw
    generator = minibatch_order.minibatch_generator(
        COMPAT, seed=123, epoch=2, batch=2, batch_sizes=sizes, device=torch.device("cpu")
    )
    assert torch.equal(torch.randperm(5, generator=generator), expected[7])


def test_reference_order_ignores_the_seed_but_townlets_does_not() -> None:
    def perm(cfg: PPOConfig, seed: int) -> torch.Tensor:
        generator = minibatch_order.minibatch_generator(
            cfg, seed=seed, epoch=0, batch=1, batch_sizes=(64,), device=torch.device("cpu")
        )
        return torch.randperm(64, generator=generator)

    assert torch.equal(perm(COMPAT, 0), perm(COMPAT, 9))
    assert not torch.equal(perm(PPOConfig(), 0), perm(PPOConfig(), 9))


def test_reference_compat_runs_are_repeatable_over_epochs_and_batches() -> None:
    samples = [make_sample(6, seed=i) for i in range(3)]
    dataset = InMemoryReplayDataset(samples, batch_size=2)

    def records() -> list[dict[str, Any]]:
        run = train_ppo(dataset, epochs=3, seed=1, cfg=COMPAT, clock=lambda: 0.0)
        return [r.to_dict() for r in run.results]

    first = records()
    minibatch_order.reference_generator(0, (1,))  # replace the memo
    assert records() == first
