"""Pure PPO math: GAE, advantage normalisation, minibatch indices and the clipped loss.

Every function is top-level, side-effect free and follows ``spec/reference-ppo.md`` §6 (section
numbers below refer to it). Tensors are float32 unless noted; nothing here reads global RNG.
"""

from __future__ import annotations

import operator

import attrs
import torch

from townlet._records import map_fields
from townlet._summary import record_dict, short_repr
from townlet.config import PPOConfig
from townlet.errors import ReplayDataError
from townlet.policy.nn.network import Params, apply
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.replay.batch import ReplayBatch

ADV_NORM_EPS = 1e-8

DemoRows = tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]
"""Expert demonstration rows for the BC term: ``(maps or None, features, actions)``."""


def compute_gae(
    rewards: torch.Tensor,
    value_preds: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns for a ``(B, T)`` batch (§6.1).

    ``value_preds`` is ``(B, T+1)`` (last column = bootstrap value) or ``(B, T)``; without the
    bootstrap column the reference uses ``V[t]`` itself as the next value (kept for
    compatibility). ``dones[b, t]`` cuts both the bootstrap and the recursion at ``t``; rows are
    independent. Returns ``(advantages, returns)``, both ``(B, T)`` float32, with
    ``returns = advantages + V[:, :T]`` (un-normalised advantages).
    Raises ``ReplayDataError`` (a ``ValueError``) on wrong ranks or widths.
    """
    if rewards.dim() != 2 or dones.dim() != 2:
        raise ReplayDataError("Rewards and dones must be 2D tensors (batch, timesteps)")
    if value_preds.dim() != 2:
        raise ReplayDataError("Value predictions must be a 2D tensor (batch, timesteps[+1])")
    batch, steps = rewards.shape
    if dones.shape != rewards.shape or value_preds.shape[0] != batch:
        raise ReplayDataError(
            f"rewards {tuple(rewards.shape)}, dones {tuple(dones.shape)} and value_preds "
            f"{tuple(value_preds.shape)} disagree on (batch, timesteps)"
        )
    if value_preds.shape[1] not in (steps, steps + 1):
        raise ReplayDataError(
            f"value_preds must have {steps} or {steps + 1} columns, got {value_preds.shape[1]}"
        )
    rewards = rewards.float()
    values = value_preds.float()
    mask = 1.0 - dones.float()
    current = values[:, :steps]
    following = values[:, 1:] if values.shape[1] == steps + 1 else current
    deltas = rewards + gamma * following * mask - current
    advantages = torch.empty_like(rewards)
    gae = torch.zeros(batch, dtype=rewards.dtype, device=rewards.device)
    for t in range(steps - 1, -1, -1):
        gae = deltas[:, t] + gamma * gae_lambda * mask[:, t] * gae
        advantages[:, t] = gae
    return advantages, advantages + current


def normalize_advantages(advantages: torch.Tensor) -> torch.Tensor:
    """``(A - mean) / (std + 1e-8)`` over all elements, population std (§6.2).

    A single element normalises to exactly 0. When the mean or std is NaN the input is returned
    unchanged (as the reference), so NaN detection stays with the caller. No device sync.
    """
    mean = advantages.mean()
    std = advantages.std(unbiased=False) if advantages.numel() > 1 else torch.zeros_like(mean)
    normalized = (advantages - mean) / (std + ADV_NORM_EPS)
    invalid = torch.isnan(mean) | torch.isnan(std)
    return torch.where(invalid, advantages, normalized)


def minibatch_size(n: int, cfg: PPOConfig) -> int:
    """Minibatch size for ``n`` transitions (§6.4).

    ``min(mini_batch_size, max(1, n // min(num_mini_batches, n)))``; e.g. with the defaults
    (32, 4): n=2 → 1, n=10 → 2, n=100 → 25, n=1000 → 32. Raises ``ValueError`` for ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"minibatch_size needs at least one transition, got n={n}")
    desired = min(cfg.num_mini_batches, n)
    return min(cfg.mini_batch_size, max(1, n // desired))


def minibatch_indices(n: int, cfg: PPOConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into minibatches of :func:`minibatch_size` (§6.4).

    The last minibatch may be short; every index appears exactly once. The int64 index tensors
    live on ``generator``'s device. Only ``generator`` supplies randomness.
    """
    size = minibatch_size(n, cfg)
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return list(torch.split(perm, size))


@attrs.frozen(kw_only=True, eq=False)
class PPOMinibatch:
    """The flat tensors one PPO update reads; N transitions (§6.4).

    ``maps`` ``(N, C, H, W)`` (ignored when the network has no map branch, may be None),
    ``features`` ``(N, D)``, ``actions`` int64 ``(N,)``, and float32 ``(N,)``:
    ``old_log_probs``, ``advantages`` (normalised when configured), ``returns``, ``old_values``.
    """

    __repr__ = short_repr
    to_dict = record_dict

    maps: torch.Tensor | None
    features: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    old_values: torch.Tensor

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def select_minibatch(data: PPOMinibatch, indices: torch.Tensor) -> PPOMinibatch:
    """The rows ``indices`` of every field of ``data`` (new tensors; ``data`` is unchanged)."""
    return map_fields(operator.itemgetter(indices), data)


def prepare_batch(
    batch: ReplayBatch, cfg: PPOConfig, *, device: str | torch.device = "cpu"
) -> PPOMinibatch:
    """A replay batch as one flat :class:`PPOMinibatch` of N = B·T rows (§6, §6.1–§6.4).

    GAE runs on the batch's stored value predictions (so it is the same every epoch);
    advantages are normalised over the whole batch when ``cfg.advantage_normalization``;
    returns use the un-normalised advantages; ``old_values`` are the first T value columns.
    Rows are in row-major ``(b, t)`` order. No finiteness check is made here: the caller checks
    ``advantages`` then ``returns`` (§6.3) so its message can name the dataset and batch.
    """
    steps, n = batch.timesteps, batch.batch_size * batch.timesteps
    values = torch.as_tensor(batch.value_preds, device=device)
    advantages, returns = compute_gae(
        torch.as_tensor(batch.rewards, device=device),
        values,
        torch.as_tensor(batch.dones, device=device),
        cfg.gamma,
        cfg.gae_lambda,
    )
    if cfg.advantage_normalization:
        advantages = normalize_advantages(advantages)
    maps = torch.as_tensor(batch.maps, device=device)
    return PPOMinibatch(
        maps=maps.reshape(n, *maps.shape[2:]),
        features=torch.as_tensor(batch.features, device=device).reshape(n, -1),
        actions=torch.as_tensor(batch.actions, device=device).reshape(n),
        old_log_probs=torch.as_tensor(batch.old_log_probs, device=device).reshape(n),
        advantages=advantages.reshape(n),
        returns=returns.reshape(n),
        old_values=values[:, :steps].reshape(n),
    )


@attrs.frozen(kw_only=True, eq=False)
class LossTerms:
    """The parts of the PPO loss, each a detached 0-d tensor (§6.5).

    ``entropy`` is the mean policy entropy (positive), ``bc`` the cross-entropy of the logits
    against the taken actions, or against the expert's actions on demonstration rows when the
    update has them (always computed; weighted by ``bc_coef`` in the total),
    ``clip_fraction`` the share of strictly clipped ratios, ``approx_kl`` = mean(old − new
    log-prob) (can be negative).
    """

    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    bc: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor


def value_loss(
    new_values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor, value_clip: float
) -> torch.Tensor:
    """``0.5 · mean(max(unclipped², clipped²))``; plain ``0.5 · MSE`` when ``value_clip == 0``.

    Raises ``ValueError`` unless the three tensors have the same shape.
    """
    if not new_values.shape == returns.shape == old_values.shape:
        raise ValueError(
            f"value loss needs equal shapes, got new {tuple(new_values.shape)}, returns "
            f"{tuple(returns.shape)}, old {tuple(old_values.shape)}"
        )
    unclipped = (new_values - returns).pow(2)
    if value_clip <= 0.0:
        return 0.5 * unclipped.mean()
    clipped_values = old_values + torch.clamp(new_values - old_values, -value_clip, value_clip)
    clipped = (clipped_values - returns).pow(2)
    return 0.5 * torch.max(unclipped, clipped).mean()


def ppo_loss(
    params: Params,
    minibatch: PPOMinibatch,
    cfg: PPOConfig,
    *,
    spec: NetworkSpec,
    value_only: bool = False,
    demo: DemoRows | None = None,
) -> tuple[torch.Tensor, LossTerms]:
    """The PPO loss of ``params`` on ``minibatch`` (§6.5) and its parts.

    ``total = policy + value_loss_coef·value − entropy_coef·entropy + bc_coef·bc``; with
    ``value_only`` the total is ``value_loss_coef·value`` alone (critic warm-up), the other terms
    are still reported. ``bc`` is the cross-entropy on ``demo`` rows (expert demonstrations)
    when given, else on the minibatch's own actions. Raises ``ValueError`` on mismatched
    minibatch shapes.
    """
    mb = minibatch
    fields = (mb.maps, mb.features, mb.actions, mb.old_log_probs, mb.advantages, mb.returns)
    total, parts = ppo_loss_parts(
        params, *fields, mb.old_values, cfg, spec=spec, value_only=value_only, demo=demo
    )
    policy, value, entropy, bc, clip_fraction, approx_kl = parts
    return total, LossTerms(
        policy=policy,
        value=value,
        entropy=entropy,
        bc=bc,
        clip_fraction=clip_fraction,
        approx_kl=approx_kl,
    )


def demo_cross_entropy(params: Params, demo: DemoRows, *, spec: NetworkSpec) -> torch.Tensor:
    """The mean cross-entropy of the policy's logits on demonstration rows against the expert's
    actions: the BC term of a demonstration-regularised PPO update."""
    maps, features, actions = demo
    logits, _values = apply(params, maps, features, spec=spec)
    return torch.nn.functional.cross_entropy(logits, actions)


def ppo_loss_parts(
    params: Params,
    maps: torch.Tensor | None,
    features: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    cfg: PPOConfig,
    *,
    spec: NetworkSpec,
    value_only: bool = False,
    demo: DemoRows | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """:func:`ppo_loss` over the minibatch's tensors, its parts as a plain tuple ``(policy,
    value, entropy, bc, clip_fraction, approx_kl)``: no record is built, which is what lets
    ``torch.compile`` trace it without a graph break (docs/gpu.md)."""
    logits, new_values = apply(params, maps, features, spec=spec)
    log_probs = torch.log_softmax(logits, dim=-1)
    new_logp = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    if not new_logp.shape == old_log_probs.shape == advantages.shape:
        raise ValueError(
            f"policy surrogate needs equal shapes, got new {tuple(new_logp.shape)}, "
            f"old {tuple(old_log_probs.shape)}, advantages {tuple(advantages.shape)}"
        )
    entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
    ratio = torch.exp(new_logp - old_log_probs)
    low, high = 1.0 - cfg.clip_param, 1.0 + cfg.clip_param
    surrogate = torch.min(ratio * advantages, torch.clamp(ratio, low, high) * advantages)
    policy = -surrogate.mean()
    value = value_loss(new_values, returns, old_values, cfg.value_clip)
    bc = -new_logp.mean() if demo is None else demo_cross_entropy(params, demo, spec=spec)
    if value_only:
        total = cfg.value_loss_coef * value
    else:
        total = policy + cfg.value_loss_coef * value - cfg.entropy_coef * entropy
        if cfg.bc_coef > 0.0:
            total = total + cfg.bc_coef * bc
    with torch.no_grad():
        clip_fraction = ((ratio > high) | (ratio < low)).float().mean()
        approx_kl = (old_log_probs - new_logp).mean()
    parts = (policy.detach(), value.detach(), entropy.detach(), bc.detach())
    return total, (*parts, clip_fraction, approx_kl)
