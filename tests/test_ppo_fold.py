"""ppo_epoch (strategies/ppo_fold.py): one fold for replay and online data, equal to the
per-minibatch loop it replaced; map_fields; the named random streams."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _replay_helpers import make_sample  # noqa: E402
from townlet._records import map_fields  # noqa: E402
from townlet.config import PPOConfig  # noqa: E402
from townlet.errors import NonFiniteTrainingError  # noqa: E402
from townlet.policy.nn.rng import derive_generator, derive_seed, stream_generator  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.replay import InMemoryReplayDataset  # noqa: E402
from townlet.policy.streams import Stream, stream_rng, stream_seed, stream_words  # noqa: E402
from townlet.policy.training.strategies.ppo.epoch import (  # noqa: E402
    EpochData,
    demo_slices,
    ppo_epoch,
    shuffle_rows,
    split_rows,
)
from townlet.policy.training.strategies.ppo.functional import (  # noqa: E402
    PPOMinibatch,
    minibatch_indices,
    select_minibatch,
)
from townlet.policy.training.strategies.ppo.replay import epoch_data, prepare_batches  # noqa: E402
from townlet.policy.training.strategies.ppo.step import (  # noqa: E402
    init_ppo_state,
    ppo_minibatch_step,
    ppo_minibatch_update,
)

SMALL = NetworkSpec(map_shape=(2, 3, 3), feature_dim=4, action_dim=3, hidden_dim=16)
CFG = PPOConfig(mini_batch_size=4, num_mini_batches=4)


def _prepared(n: int = 4, timesteps: int = 6):  # type: ignore[no-untyped-def]
    samples = [make_sample(timesteps, seed=i) for i in range(n)]
    dataset = InMemoryReplayDataset(samples, batch_size=2)
    return prepare_batches(list(dataset.batches(0)), CFG, label="toy")


def _flat(rows: int = 5) -> PPOMinibatch:
    x = torch.arange(float(rows))
    return PPOMinibatch(
        maps=None, features=x[:, None].repeat(1, 2), actions=torch.arange(rows),
        old_log_probs=-x, advantages=x, returns=2 * x, old_values=3 * x,
    )  # fmt: skip


def test_map_fields_applies_to_every_field_but_none() -> None:
    data = _flat(5)
    part = map_fields(lambda t: t[1:3], data)
    assert part.maps is None and len(part) == 2
    assert part.returns.tolist() == [2.0, 4.0] and part.features.shape == (2, 2)
    assert len(data) == 5  # unchanged


def test_shuffle_then_split_covers_each_row_once_in_order_of_the_permutation() -> None:
    data = _flat(7)
    parts = split_rows(shuffle_rows(data, torch.Generator().manual_seed(3)), 3)
    assert [len(p) for p in parts] == [3, 3, 1]
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    assert torch.cat([p.actions for p in parts]).tolist() == perm.tolist()


def test_epoch_equals_the_per_minibatch_replay_loop_bit_for_bit() -> None:
    """The loop this fold replaced: minibatch_indices + select_minibatch + a read-back per
    update, with the permutation of derive_generator(seed, 1, epoch, batch)."""
    prepared, state = _prepared(), init_ppo_state(SMALL, seed=4)
    expected_state, expected = state, []
    for b, batch in enumerate(prepared.batches, start=1):
        generator = derive_generator(4, 1, 0, b)
        for indices in minibatch_indices(len(batch), CFG, generator):
            expected_state, stats = ppo_minibatch_step(
                expected_state, select_minibatch(batch, indices), CFG
            )
            expected.append(stats)
    snapshot = {k: v.clone() for k, v in state.params.items()}
    new_state, got = ppo_epoch(state, epoch_data(prepared, 0), CFG)
    assert list(got) == expected
    assert all(torch.equal(new_state.params[k], v) for k, v in expected_state.params.items())
    # Two batches of 12 rows; minibatch min(4, 12 // 4) = 3 rows: 4 per batch.
    assert new_state.updates == len(expected) == 8
    assert all(torch.equal(snapshot[k], v) for k, v in state.params.items())


def test_value_only_epoch_moves_only_the_value_head() -> None:
    prepared, state = _prepared(2), init_ppo_state(SMALL, seed=0)
    new_state, _ = ppo_epoch(state, epoch_data(prepared, 0, value_only=True), CFG)
    changed = {k for k in state.params if not torch.equal(state.params[k], new_state.params[k])}
    assert changed == {"value_head.weight", "value_head.bias"}


def test_divergence_is_checked_once_and_names_the_batch_and_minibatch() -> None:
    prepared, state = _prepared(4), init_ppo_state(SMALL, seed=0)
    bad = map_fields(lambda t: t.clone(), prepared.batches[1])
    bad.advantages[5] = float("nan")
    data = EpochData(
        batches=(prepared.batches[0], bad), keys=((0, 1), (0, 2)),
        stream=Stream.PPO_PERMUTATION, label="dataset=toy",
    )  # fmt: skip
    with pytest.raises(NonFiniteTrainingError) as caught:
        ppo_epoch(state, data, CFG)
    message = str(caught.value)
    assert message.startswith("PPO loss, gradient norm or advantage std became NaN/inf")
    assert "(dataset=toy, batch=2, minibatch=" in message
    with pytest.raises(ValueError, match="2 batches need as many keys"):
        EpochData(batches=data.batches, keys=((0, 1),), stream=Stream.BC_SPLIT, label="x")


def test_streams_derive_the_values_the_numbered_tags_did() -> None:
    # HEAD streams are derive_seed(seed, tag, *counters): the old derive_generator calls.
    assert stream_seed(7, Stream.PPO_PERMUTATION, 2, 3) == derive_seed(7, 1, 2, 3)
    assert stream_seed(7, Stream.ONLINE_PERMUTATION, 1, 0) == derive_seed(7, 11, 1, 0)
    assert stream_seed(7, Stream.ONLINE_ACTIONS, 4) == derive_seed(7, 12, 4)
    assert stream_seed(7, Stream.BC_SPLIT) == derive_seed(7, 3)
    # TAIL streams are SeedSequence([seed, *counters, tag]) (anneal stage seeds, numpy rngs).
    old_stage = int(np.random.SeedSequence([7, 2, 11]).generate_state(1)[0] >> 1)
    assert stream_seed(7, Stream.STAGE_CAPTURE, 2) == old_stage
    assert stream_words(7, Stream.STAGE_BC, 2) == [7, 2, 12]
    old_rng = np.random.default_rng([9, 3]).random(4)
    assert np.array_equal(stream_rng(9, Stream.CAPTURE_POLICY).random(4), old_rng)
    # Tags 11 and 12 name two streams each, in different layouts, and never collide.
    assert stream_seed(7, Stream.STAGE_CAPTURE, 0) != stream_seed(7, Stream.ONLINE_PERMUTATION)
    assert len({s.value for s in Stream}) == len(Stream)


def _demo_rows(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    maps = torch.linspace(-1.0, 1.0, n * 18).reshape(n, 2, 3, 3)
    return maps, torch.arange(float(n))[:, None].repeat(1, 4), torch.arange(n) % 3


def test_demo_slices_read_a_seeded_permutation_in_order_and_wrap() -> None:
    demos = _demo_rows(5)
    slices = demo_slices(demos, 7, (2, 1), [3, 3, 2])
    assert [len(s[2]) for s in slices] == [3, 3, 2]
    rows = torch.cat([s[1][:, 0] for s in slices]).long().tolist()
    perm = torch.randperm(5, generator=stream_generator(7, Stream.PPO_DEMOS, 2, 1)).tolist()
    assert rows == (perm + perm)[:8]  # every row once before any repeats
    again = demo_slices(demos, 7, (2, 1), [3, 3, 2])
    assert all(torch.equal(a[1], b[1]) for a, b in zip(slices, again, strict=True))
    other = demo_slices(demos, 7, (3, 1), [3, 3, 2])  # another epoch: another order
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(slices, other, strict=True))


def test_epoch_with_demos_hands_each_policy_update_its_rows() -> None:
    prepared, state = _prepared(), init_ppo_state(SMALL, seed=4)
    demos = _demo_rows(10)
    seen: list[tuple[int, int]] = []

    def update(state, minibatch, cfg, *, demo=None, **kw):  # type: ignore[no-untyped-def]
        seen.append((len(minibatch), -1 if demo is None else len(demo[2])))
        return ppo_minibatch_update(state, minibatch, cfg, demo=demo, **kw)

    ppo_epoch(state, epoch_data(prepared, 0, demos=demos), CFG, minibatch_update=update)
    assert seen == [(3, 3)] * 8  # as many demonstration rows as each minibatch has
    seen.clear()
    ppo_epoch(state, epoch_data(prepared, 0, demos=demos, value_only=True), CFG,
              minibatch_update=update)  # fmt: skip
    assert seen == [(3, -1)] * 8  # warm-up epochs train the critic alone: no rows
    cfg = PPOConfig(mini_batch_size=4, num_mini_batches=4, bc_coef=0.5)
    plain, _ = ppo_epoch(state, epoch_data(prepared, 0), cfg)
    first, _ = ppo_epoch(state, epoch_data(prepared, 0, demos=demos), cfg)
    second, _ = ppo_epoch(state, epoch_data(prepared, 0, demos=demos), cfg)
    assert all(torch.equal(first.params[k], v) for k, v in second.params.items())
    assert not all(torch.equal(first.params[k], v) for k, v in plain.params.items())
