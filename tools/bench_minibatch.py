"""Time one PPO minibatch update: the functional core vs an imperative torch loop.

Usage: ``python tools/bench_minibatch.py [--batch 32] [--hidden 256] [--threads 1]``

Variants, all on the same Townlet network, data and loss (``ppo_loss``), interleaved in rounds
so that machine noise hits them alike:

* ``imperative``: ``nn.Module`` parameters, ``loss.backward()``, ``clip_grad_norm_``,
  ``torch.optim.Adam.step()`` (the reference's loop);
* ``functional``: :func:`ppo_minibatch_step` (``autograd.grad`` over leaves + foreach Adam);
* ``torch_func``: ``torch.func.grad_and_value`` + ``functional_call`` + the same pure Adam.

Each variant also reads its stats back as Python floats, as a training loop must.
Prints the median milliseconds per update and the ratio to ``imperative``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from townlet.config import PPOConfig
from townlet.policy.nn.adam import AdamConfig, adam_update
from townlet.policy.nn.grads import clip_by_global_norm
from townlet.policy.nn.network import init_params
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch, ppo_loss
from townlet.policy.training.strategies.ppo.step import init_ppo_state, ppo_minibatch_step


def _minibatch(spec: NetworkSpec, n: int, gen: torch.Generator) -> PPOMinibatch:
    return PPOMinibatch(
        maps=torch.rand(n, *spec.map_shape, generator=gen),
        features=torch.randn(n, spec.feature_dim, generator=gen),
        actions=torch.randint(0, spec.action_dim, (n,), generator=gen),
        old_log_probs=-torch.rand(n, generator=gen) - 1.5,
        advantages=torch.randn(n, generator=gen),
        returns=torch.randn(n, generator=gen),
        old_values=torch.randn(n, generator=gen),
    )


def _imperative(spec: NetworkSpec, mb: PPOMinibatch, cfg: PPOConfig) -> Callable[[], None]:
    module = nn.ParameterDict(
        {k.replace(".", "_"): nn.Parameter(v.clone()) for k, v in init_params(spec, 0).items()}
    )
    names = list(init_params(spec, 0))
    opt = torch.optim.Adam(module.parameters(), lr=cfg.learning_rate)

    def step() -> None:
        params = {k: module[k.replace(".", "_")] for k in names}
        total, terms = ppo_loss(params, mb, cfg, spec=spec)
        opt.zero_grad()
        total.backward()
        norm = nn.utils.clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
        opt.step()
        torch.stack([total.detach(), terms.policy, terms.value, terms.entropy, norm]).tolist()

    return step


def _functional(spec: NetworkSpec, mb: PPOMinibatch, cfg: PPOConfig) -> Callable[[], None]:
    state = init_ppo_state(spec, seed=0)

    def step() -> None:
        nonlocal state
        state, _stats = ppo_minibatch_step(state, mb, cfg)

    return step


def _torch_func(spec: NetworkSpec, mb: PPOMinibatch, cfg: PPOConfig) -> Callable[[], None]:
    state = init_ppo_state(spec, seed=0)
    params, adam_state = dict(state.params), state.adam_state
    adam_cfg = AdamConfig(lr=cfg.learning_rate)

    def loss_fn(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        total, terms = ppo_loss(p, mb, cfg, spec=spec)
        return total, (total.detach(), terms.policy, terms.value, terms.entropy)

    grad_fn = torch.func.grad_and_value(loss_fn, has_aux=True)

    def step() -> None:
        nonlocal params, adam_state
        grads, (_total, aux) = grad_fn(params)
        clipped, norm = clip_by_global_norm(grads, cfg.max_grad_norm)
        new_params, adam_state = adam_update(clipped, adam_state, params, adam_cfg)
        params = dict(new_params)
        torch.stack([*aux, norm]).tolist()

    return step


def _time(step: Callable[[], None], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = NetworkSpec(map_shape=(4, 11, 11), feature_dim=36, action_dim=8, hidden_dim=args.hidden)
    cfg = PPOConfig()
    mb = _minibatch(spec, args.batch, torch.Generator().manual_seed(1))
    variants = {
        "imperative": _imperative(spec, mb, cfg),
        "functional": _functional(spec, mb, cfg),
        "torch_func": _torch_func(spec, mb, cfg),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for step in variants.values():
        _time(step, 20)  # warm-up
    for _ in range(args.rounds):
        for name, step in variants.items():
            times[name].append(_time(step, args.repeats))
    base = statistics.median(times["imperative"])
    print(
        f"PPO minibatch update: batch {args.batch}, hidden {args.hidden}, map (4,11,11), "
        f"features 36, actions 8, threads {args.threads}, torch {torch.__version__}"
    )
    for name, samples in times.items():
        med = statistics.median(samples)
        print(
            f"{name:>11}: {med:7.3f} ms/update (median of {args.rounds} x {args.repeats}), "
            f"ratio {med / base:.3f}"
        )


if __name__ == "__main__":
    main()
