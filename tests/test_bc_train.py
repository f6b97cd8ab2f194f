"""train_bc / bc_epoch: seeded split, accuracy on a separable toy, idle_v1 -> checkpoint -> PPO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _replay_helpers import reference_root  # noqa: E402
from townlet.config import BCConfig  # noqa: E402
from townlet.errors import CheckpointError, ConfigError  # noqa: E402
from townlet.policy.nn.checkpoint import load_checkpoint  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.replay import (  # noqa: E402
    ReplayDataset,
    ReplayDatasetConfig,
    ReplaySample,
)
from townlet.policy.training.strategies.bc.epoch import (  # noqa: E402
    BCFrameTensors,
    bc_batches,
    bc_epoch,
    split_frames,
)
from townlet.policy.training.strategies.bc.step import init_bc_state  # noqa: E402
from townlet.policy.training.strategies.bc.train import save_bc_checkpoint, train_bc  # noqa: E402
from townlet.policy.training.strategies.ppo.train import train_ppo  # noqa: E402

NAMES = ["signal", "rivalry_max", "rivalry_avoid_count", "noise"]


def _toy_samples(n_samples: int = 4, timesteps: int = 100, seed: int = 0) -> list[ReplaySample]:
    """Action = 1 iff feature 0 > 0; the other features are noise; no map."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_samples):
        features = rng.standard_normal((timesteps, 4)).astype(np.float32)
        actions = (features[:, 0] > 0).astype(np.int64)
        samples.append(
            ReplaySample(
                features=features,
                actions=actions,
                old_log_probs=np.zeros(timesteps, np.float32),
                value_preds=np.zeros(timesteps + 1, np.float32),
                rewards=np.zeros(timesteps, np.float32),
                dones=np.zeros(timesteps, bool),
                metadata={"feature_names": NAMES},
            )
        )
    return samples


def test_toy_separable_by_one_feature_reaches_095_validation_accuracy() -> None:
    cfg = BCConfig(epochs=15, batch_size=32, learning_rate=3e-3, val_fraction=0.2)
    run = train_bc(_toy_samples(), cfg=cfg, seed=1)
    result = run.result
    assert result.val_accuracy is not None and result.val_accuracy >= 0.95
    assert result.accuracy >= 0.95 and result.val_loss is not None and result.val_loss < 0.3
    assert result.manifest == "<in-memory>" and result.epochs == 15
    assert len(run.history) == 15
    assert run.history[-1].loss < run.history[0].loss
    assert run.history[0].samples == 320  # 400 frames, 80 held out
    assert run.spec == NetworkSpec(map_shape=(0, 0, 0), feature_dim=4, action_dim=2)


def test_same_seed_same_run_and_split_by_frames() -> None:
    cfg = BCConfig(epochs=2, batch_size=16)
    first = train_bc(_toy_samples(2, 30), cfg=cfg, seed=4)
    second = train_bc(_toy_samples(2, 30), cfg=cfg, seed=4)
    other = train_bc(_toy_samples(2, 30), cfg=cfg, seed=5)
    assert first.result.val_loss == second.result.val_loss
    assert first.result.val_loss != other.result.val_loss
    for name, value in first.params.items():
        assert torch.equal(value, second.params[name])
    frames = BCFrameTensors(
        maps=None, features=torch.arange(20.0).reshape(10, 2), actions=torch.arange(10)
    )
    train, val = split_frames(frames, 0.3, seed=4)
    assert val is not None and len(val) == 3 and len(train) == 7
    assert sorted(train.actions.tolist() + val.actions.tolist()) == list(range(10))
    assert val.actions.tolist() == sorted(val.actions.tolist())
    assert split_frames(frames, 0.05, seed=4)[1] is None  # floor(0.5) = 0 frames held out


def test_no_validation_split_reports_none() -> None:
    run = train_bc(_toy_samples(1, 20), cfg=BCConfig(epochs=1, val_fraction=0.0))
    assert run.result.val_accuracy is None and run.result.val_loss is None


def test_bc_epoch_is_a_pure_fold() -> None:
    spec = NetworkSpec(feature_dim=2, action_dim=3, hidden_dim=8)
    state = init_bc_state(spec, seed=0)
    frames = BCFrameTensors(
        maps=None, features=torch.randn(10, 2), actions=torch.tensor([0, 1, 2, 0, 1] * 2)
    )
    batches = bc_batches(frames, 4, seed=0, epoch=0)
    assert [len(b[2]) for b in batches] == [4, 4, 2]
    snapshot = {k: v.clone() for k, v in state.params.items()}
    new_state, stats = bc_epoch(state, batches, BCConfig())
    _again, stats_again = bc_epoch(state, batches, BCConfig())
    assert stats == stats_again and stats.updates == 3 and stats.samples == 10
    assert new_state.updates == 3
    assert all(torch.equal(snapshot[k], v) for k, v in state.params.items())
    order = torch.cat([b[1][:, 0] for b in batches]).tolist()
    next_order = torch.cat([b[1][:, 0] for b in bc_batches(frames, 4, seed=0, epoch=1)]).tolist()
    assert order != next_order and sorted(order) == sorted(next_order)


def test_missing_manifest_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BC manifest is required"):
        train_bc(cfg=BCConfig())


def test_idle_v1_bc_checkpoint_initialises_ppo(tmp_path: Path) -> None:
    """The idle_v1 captures (68 features, one action) do not fit the phase4 captures (36/24
    features), so BC -> PPO runs on idle_v1 itself, read as a replay dataset."""
    root = reference_root()
    manifest = root / "data" / "bc_datasets" / "manifests" / "idle_v1.json"
    run = train_bc(manifest, root=root, cfg=BCConfig(epochs=2), seed=0)
    assert run.result.accuracy == 1.0 and run.result.val_accuracy == 1.0  # one action only
    assert run.spec == NetworkSpec(map_shape=(4, 11, 11), feature_dim=68, action_dim=1)
    path = save_bc_checkpoint(tmp_path / "checkpoint.pt", run)
    checkpoint = load_checkpoint(path)
    assert checkpoint.extra["kind"] == "bc" and checkpoint.extra["result"]["epochs"] == 2
    dataset = ReplayDataset(ReplayDatasetConfig.from_manifest(manifest, root=root))
    ppo = train_ppo(dataset, init=path, epochs=1)
    assert ppo.state.spec == run.spec
    moved = [k for k in run.params if not torch.equal(run.params[k], ppo.state.params[k])]
    assert moved  # PPO started from the BC weights and trained them
    phase4 = root / "artifacts" / "phase4" / "queue_conflict"
    with pytest.raises(CheckpointError, match="feature_dim 36 != 68"):
        train_ppo(ReplayDataset(ReplayDatasetConfig.from_capture_dir(phase4)), init=path)
