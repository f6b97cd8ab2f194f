"""Time one PPO minibatch update: the functional core vs an imperative torch loop.

Usage: ``python tools/bench_minibatch.py [--net town|mlp] [--batch 32] [--hidden 256]``

``--net mlp`` times CartPole's networks instead (4 features, 2 actions, 64-64 tanh actor and a
separate critic, orthogonal init; tools/bench_cartpole.py's PPO settings; use ``--batch 64``).

Variants, all on the same Townlet network, data and loss (``ppo_loss``), interleaved in rounds
so that machine noise hits them alike:

* ``imperative``: ``nn.Module`` parameters, ``loss.backward()``, ``clip_grad_norm_``,
  ``torch.optim.Adam.step()`` (the reference's loop);
* ``functional``: :func:`ppo_minibatch_step` as the PPO fold calls it — the loss gradient and
  the network's backward written out (no autograd graph, ``ppo/analytic.py``), then torch's
  fused Adam kernel writing in place the state the fold made (donated);
* ``functional_autograd``: the same update with the gradient from ``autograd.grad`` over leaves
  (the fold's update before the written-out gradient, #18);
* ``functional_copy``: the same step called purely (no donation: the update copies the
  parameters and moments it writes);
* ``torch_func``: ``torch.func.grad_and_value`` + the same pure Adam (copying).

Each variant also reads its stats back as Python floats, as a training loop must.
Prints the median milliseconds per update and the ratio to ``imperative``, then checks that
100 updates of each variant from the same start land on the imperative loop's parameters
(largest absolute difference).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from townlet.config import PPOConfig
from townlet.policy.nn.adam import AdamConfig, adam_update, make_adam
from townlet.policy.nn.grads import clip_by_global_norm, update_with_gradients, value_and_grad
from townlet.policy.nn.network import Params, init_params
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch, ppo_loss
from townlet.policy.training.strategies.ppo.step import init_ppo_state, ppo_minibatch_step


def _minibatch(spec: NetworkSpec, n: int, gen: torch.Generator) -> PPOMinibatch:
    return PPOMinibatch(
        maps=torch.rand(n, *spec.map_shape, generator=gen) if spec.has_map else None,
        features=torch.randn(n, spec.feature_dim, generator=gen),
        actions=torch.randint(0, spec.action_dim, (n,), generator=gen),
        old_log_probs=-torch.rand(n, generator=gen) - 1.5,
        advantages=torch.randn(n, generator=gen),
        returns=torch.randn(n, generator=gen),
        old_values=torch.randn(n, generator=gen),
    )


Variant = tuple[Callable[[], None], Callable[[], Params]]
"""A variant: one update, and a reader of its current parameters."""


def _imperative(spec: NetworkSpec, mb: PPOMinibatch, cfg: PPOConfig) -> Variant:
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

    return step, lambda: {k: module[k.replace(".", "_")].detach() for k in names}


def _functional(
    spec: NetworkSpec, mb: PPOMinibatch, cfg: PPOConfig, *, donate: bool = True
) -> Variant:
    state = init_ppo_state(spec, seed=0)
    adam = make_adam(AdamConfig(lr=cfg.learning_rate))
    first = True

    def step() -> None:
        nonlocal state, first
        # As the fold: the first update copies (the state is the caller's), later ones donate.
        state, _stats = ppo_minibatch_step(state, mb, cfg, adam=adam, donate=donate and not first)
        first = False

    return step, lambda: state.params


def _functional_autograd(spec: NetworkSpec, mb: PPOMinibatch, cfg: PPOConfig) -> Variant:
    state = init_ppo_state(spec, seed=0)
    params, adam_state = state.params, state.adam_state
    adam = make_adam(AdamConfig(lr=cfg.learning_rate))
    first = True

    def step() -> None:
        nonlocal params, adam_state, first
        loss_fn = functools.partial(ppo_loss, minibatch=mb, cfg=cfg, spec=spec)
        total, terms, grads = value_and_grad(loss_fn, params)
        adv_std, adv_mean = torch.std_mean(mb.advantages, correction=0)
        params, adam_state, norm = update_with_gradients(
            adam.update,
            params,
            grads,
            adam_state,
            max_grad_norm=cfg.max_grad_norm,
            donate=not first,
        )
        first = False
        parts = (terms.policy, terms.value, terms.entropy, terms.bc, terms.clip_fraction)
        torch.stack([total, *parts, terms.approx_kl, norm, adv_mean, adv_std]).tolist()

    return step, lambda: params


def _functional_copy(spec: NetworkSpec, mb: PPOMinibatch, cfg: PPOConfig) -> Variant:
    return _functional(spec, mb, cfg, donate=False)


def _torch_func(spec: NetworkSpec, mb: PPOMinibatch, cfg: PPOConfig) -> Variant:
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

    return step, lambda: params


VARIANTS: dict[str, Callable[[NetworkSpec, PPOMinibatch, PPOConfig], Variant]] = {
    "imperative": _imperative,
    "functional": _functional,
    "functional_autograd": _functional_autograd,
    "functional_copy": _functional_copy,
    "torch_func": _torch_func,
}


def _max_difference(spec: NetworkSpec, mb: PPOMinibatch, cfg: PPOConfig, name: str) -> float:
    """Largest |parameter difference| to the imperative loop after 100 updates of each."""
    runs = {}
    for variant in ("imperative", name):
        step, read = VARIANTS[variant](spec, mb, cfg)
        for _ in range(100):
            step()
        runs[variant] = read()
    ref, got = runs["imperative"], runs[name]
    return max(float((ref[k] - got[k]).abs().max()) for k in ref)


def _time(step: Callable[[], None], repeats: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(repeats):
        step()
    return (clock() - start) / repeats * 1e3


def _network(net: str, hidden: int) -> tuple[NetworkSpec, PPOConfig]:
    if net == "mlp":  # tools/bench_cartpole.py's networks and settings
        spec = NetworkSpec(
            feature_dim=4,
            action_dim=2,
            hidden_dim=64,
            activation="tanh",
            critic="separate",
            init="orthogonal",
        )
        return spec, PPOConfig(learning_rate=3e-4, value_clip=0.0, entropy_coef=0.0)
    spec = NetworkSpec(map_shape=(4, 11, 11), feature_dim=36, action_dim=8, hidden_dim=hidden)
    return spec, PPOConfig()


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=("town", "mlp"), default="town")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: the process's CPU time, which other processes' load disturbs less",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec, cfg = _network(args.net, args.hidden)
    mb = _minibatch(spec, args.batch, torch.Generator().manual_seed(1))
    variants = {name: make(spec, mb, cfg)[0] for name, make in VARIANTS.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for step in variants.values():
        _time(step, 20, time.perf_counter)  # warm-up
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    names = list(variants)
    for round_index in range(args.rounds):
        # Reversed every other round: a variant is not always the one after the slowest.
        for name in names if round_index % 2 == 0 else names[::-1]:
            times[name].append(_time(variants[name], args.repeats, clock))
    print(
        f"PPO minibatch update: {args.net} network {spec.to_dict()}, batch {args.batch}, "
        f"threads {args.threads}, torch {torch.__version__}, "
        f"{args.clock} clock, 1-minute load average {os.getloadavg()[0]:.1f}"
    )
    base = times["imperative"]
    for name, samples in times.items():
        # Speed-up per round (imperative ÷ variant, measured back to back): under machine
        # load the rounds differ, the ratio within a round much less.
        speedups = sorted(b / t for b, t in zip(base, samples, strict=True))
        print(
            f"{name:>19}: {statistics.median(samples):7.3f} ms/update (median of {args.rounds} "
            f"x {args.repeats}); speed-up vs imperative, median of rounds "
            f"{statistics.median(speedups):.2f}x (range {speedups[0]:.2f}–{speedups[-1]:.2f})"
        )
    for name in VARIANTS:
        if name != "imperative":
            diff = _max_difference(spec, mb, cfg, name)
            print(f"{name:>19}: max |param - imperative| after 100 updates {diff:.1e}")


if __name__ == "__main__":
    main()
