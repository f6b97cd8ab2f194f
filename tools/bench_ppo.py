"""PPO and BC training throughput: ours vs a plain imperative torch loop, in one process.

Usage: ``python tools/bench_ppo.py [--root REFERENCE_CORPUS] [--epochs 20] [--rounds 5]``

One torch thread. Measured, interleaved round by round so machine noise hits all alike:

* ``train_ppo`` on the reference's queue_conflict capture (3 samples × 60 steps = 180
  transitions per epoch) at replay batch size 1 and 3: ``epochs`` epochs, wall time of the
  whole call (batching, GAE, every epoch), as transitions/s;
* the same PPO written imperatively here — ``nn.Module`` of ``nn.Linear`` layers,
  ``loss.backward()``, ``clip_grad_norm_``, ``torch.optim.Adam``, one ``randperm`` per batch,
  the same minibatch sizes and stats read back per minibatch — on the same prepared batches;
* ``train_bc`` on idle_v1 (400 frames, batch 64, no validation split, as the reference) as
  samples/s.

Prints the median of the rounds and the ratio to the imperative loop. The comparison with the
original Townlet runs its own code side by side: ``tools/bench_reference.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from townlet.config import BCConfig, PPOConfig
from townlet.policy.nn.network import init_params
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay import ReplayDataset, ReplayDatasetConfig
from townlet.policy.training.strategies.bc.train import train_bc
from townlet.policy.training.strategies.ppo.functional import minibatch_size, prepare_batch
from townlet.policy.training.strategies.ppo.train import train_ppo

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "reference" / "townlet-artifacts"


class _Net(nn.Module):
    """The reference's ConflictAwarePolicyNetwork, as plain modules."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        h = spec.hidden_dim
        self.map_encoder = nn.Sequential(nn.Flatten(), nn.Linear(spec.map_size, h), nn.ReLU())
        self.feature_encoder = nn.Sequential(nn.Linear(spec.feature_dim, h), nn.ReLU())
        self.shared = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU())
        self.policy_head = nn.Linear(h, spec.action_dim)
        self.value_head = nn.Linear(h, 1)

    def forward(self, maps: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.cat([self.map_encoder(maps), self.feature_encoder(features)], dim=-1)
        hidden = self.shared(x)
        return self.policy_head(hidden), self.value_head(hidden).squeeze(-1)


def _imperative_ppo(dataset: ReplayDataset, epochs: int, cfg: PPOConfig) -> float:
    """Seconds for the imperative loop: batching + GAE + ``epochs`` epochs."""
    start = time.perf_counter()
    batches = [prepare_batch(b, cfg) for b in dataset.batches(0)]
    action_dim = max(int(b.metadata["action_dim"]) for b in dataset.batches(0))
    first = batches[0]
    assert first.maps is not None
    spec = NetworkSpec(
        map_shape=tuple(first.maps.shape[1:]),
        feature_dim=first.features.shape[1],
        action_dim=action_dim,
    )
    net = _Net(spec)
    net.load_state_dict(init_params(spec, 0))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(0)
    eps, clip = cfg.clip_param, cfg.value_clip
    for _ in range(epochs):
        for data in batches:
            assert data.maps is not None
            n = len(data)
            perm = torch.randperm(n, generator=gen)
            for idx in torch.split(perm, minibatch_size(n, cfg)):
                logits, values = net(data.maps[idx], data.features[idx])
                log_probs = torch.log_softmax(logits, dim=-1)
                logp = log_probs.gather(-1, data.actions[idx].unsqueeze(-1)).squeeze(-1)
                entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
                adv, old_logp = data.advantages[idx], data.old_log_probs[idx]
                ratio = torch.exp(logp - old_logp)
                policy = -torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()
                old_v, ret = data.old_values[idx], data.returns[idx]
                v_clip = old_v + (values - old_v).clamp(-clip, clip)
                value = 0.5 * torch.max((values - ret) ** 2, (v_clip - ret) ** 2).mean()
                total = policy + cfg.value_loss_coef * value - cfg.entropy_coef * entropy
                opt.zero_grad()
                total.backward()
                norm = nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
                opt.step()
                with torch.no_grad():
                    clip_frac = ((ratio > 1 + eps) | (ratio < 1 - eps)).float().mean()
                    kl = (old_logp - logp).mean()
                    stats = [total, policy, value, entropy, clip_frac, kl, norm, adv.mean()]
                    torch.stack([s.detach() for s in stats]).tolist()
    return time.perf_counter() - start


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    capture = args.root / "artifacts" / "phase4" / "queue_conflict"
    manifest = args.root / "data" / "bc_datasets" / "manifests" / "idle_v1.json"
    datasets = {
        bs: ReplayDataset(ReplayDatasetConfig.from_capture_dir(capture, batch_size=bs))
        for bs in (1, 3)
    }
    cfg, epochs = PPOConfig(), args.epochs
    bc_cfg = BCConfig(epochs=epochs, batch_size=64, val_fraction=0.0)
    cases: dict[str, tuple[Callable[[], object], float]] = {}
    for bs, ds in datasets.items():
        work = 180.0 * epochs

        def ours(ds: ReplayDataset = ds) -> object:
            return train_ppo(ds, cfg=cfg, epochs=epochs)

        def imperative(ds: ReplayDataset = ds) -> object:
            return _imperative_ppo(ds, epochs, cfg)

        cases[f"ppo_bs{bs}"] = (ours, work)
        cases[f"ppo_bs{bs}_imperative"] = (imperative, work)
    cases["bc"] = (lambda: train_bc(manifest, cfg=bc_cfg, root=args.root), 400.0 * epochs)
    for fn, _ in cases.values():  # warm-up
        fn()
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (fn, work) in cases.items():
            rates[name].append(work / _timed(fn))
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"torch {torch.__version__}, 1 thread, {epochs} epochs, median of {args.rounds}")
    print("| case | ours (/s) | imperative (/s) | ours ÷ imperative |")
    print("|---|---:|---:|---:|")
    for bs in (1, 3):
        key = f"ppo_bs{bs}"
        ours_rate, imp = median[key], median[f"{key}_imperative"]
        print(
            f"| PPO queue_conflict, replay batch {bs} (transitions) | {ours_rate:,.0f} | "
            f"{imp:,.0f} | {ours_rate / imp:.2f} |"
        )
    print(f"| BC idle_v1, batch 64 (samples) | {median['bc']:,.0f} | – | – |")


if __name__ == "__main__":
    main()
