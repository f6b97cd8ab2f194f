"""One rank of the two-process tests in test_distributed.py (run as a script, one per rank).

``python _dist_worker.py <scenario> <out_dir>`` with torchrun's variables (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT) set by the test. Scenarios:

* ``steps``: several PPO and BC minibatch steps on this rank's shard of the global minibatches
  of :func:`global_minibatches`, with the all-reduce ``reduce_grads``, then the equal-rows
  check with equal and unequal counts; rank 0 saves parameters, stats and its row-check
  errors to ``out_dir/rank0.pt``.
* ``hang``: all-reduce in a loop until a peer is gone; the error ends the process through
  the CLI's error boundary (one line on stderr, exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import attrs
import torch

from townlet.config import BCConfig, PPOConfig
from townlet.distributed import Collective, launch_info, shard_bounds
from townlet.distributed.group import all_reduce_sum, process_group
from townlet.distributed.parallel import check_equal_rows, make_data_parallel
from townlet.distributed.reduce import ReduceGrads, make_reduce_grads
from townlet.errors import TrainingFailedError
from townlet.policy.nn.spec import NetworkSpec
from townlet.policy.training.strategies.bc.step import bc_minibatch_step, init_bc_state
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch, select_minibatch
from townlet.policy.training.strategies.ppo.step import init_ppo_state, ppo_minibatch_step

SPEC = NetworkSpec(map_shape=(2, 3, 3), feature_dim=4, action_dim=3, hidden_dim=16)
SIZES = (9, 8, 7, 10, 1)  # odd sizes: the ranks hold different row counts; 1: a rank holds none
PPO_CFG = PPOConfig(max_grad_norm=0.5, bc_coef=0.1)
BC_CFG = BCConfig(weight_decay=0.01)


def global_minibatches() -> list[PPOMinibatch]:
    """The global minibatches every test run uses (seeded)."""
    out = []
    for seed, n in enumerate(SIZES):
        gen = torch.Generator().manual_seed(seed)
        out.append(
            PPOMinibatch(
                maps=torch.randn(n, 2, 3, 3, generator=gen),
                features=torch.randn(n, 4, generator=gen),
                actions=torch.randint(0, 3, (n,), generator=gen),
                old_log_probs=-torch.rand(n, generator=gen) - 0.6,
                advantages=torch.randn(n, generator=gen) * 2 + 0.5,
                returns=torch.randn(n, generator=gen),
                old_values=torch.randn(n, generator=gen),
            )
        )
    return out


def run_steps(rank: int, world: int, reduce_grads: ReduceGrads) -> dict[str, object]:
    """Fold the PPO and BC steps over this rank's shards; parameters and stats of both."""
    ppo, bc = init_ppo_state(SPEC, seed=5), init_bc_state(SPEC, seed=5)
    ppo_stats, bc_stats = [], []
    for mb in global_minibatches():
        start, stop = shard_bounds(len(mb), rank, world)
        shard = select_minibatch(mb, torch.arange(start, stop))
        ppo, stats = ppo_minibatch_step(ppo, shard, PPO_CFG, reduce_grads=reduce_grads)
        ppo_stats.append(attrs.asdict(stats))
        batch = (shard.maps, shard.features, shard.actions)
        bc, bstats = bc_minibatch_step(bc, batch, BC_CFG, reduce_grads=reduce_grads)
        bc_stats.append(attrs.asdict(bstats))
    return {
        "ppo_params": dict(ppo.params),
        "ppo_moments": dict(ppo.adam_state.exp_avg_sq),
        "bc_params": dict(bc.params),
        "ppo_stats": ppo_stats,
        "bc_stats": bc_stats,
    }


def _row_checks(group: Collective) -> list[str]:
    """``check_equal_rows`` with equal counts (no error) and with 10 rows on rank 0, 11 on
    rank 1: the error on this rank (every rank must raise, or the other would hang)."""
    parallel = make_data_parallel(group, shared_data=False)
    errors = []
    for n in (12, 10 + group.rank):
        try:
            check_equal_rows(parallel, n, what="dataset=d")
        except TrainingFailedError as exc:
            errors.append(str(exc))
    return errors


def _hang(timeout_s: float) -> None:
    from townlet.cli import run_parsed

    def loop(args: argparse.Namespace) -> int:
        all_reduce_sum(args.collective, [1.0])
        print("ready", flush=True)  # both ranks have joined and exchanged an all-reduce
        while True:
            all_reduce_sum(args.collective, [1.0])
            time.sleep(0.01)

    args = argparse.Namespace(command="bc", handler=loop, dist_timeout=timeout_s)
    sys.exit(run_parsed(args))


def main() -> None:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    info = launch_info(os.environ)
    if scenario == "steps":
        with process_group(info, timeout_s=30.0) as group:
            result = run_steps(group.rank, group.world_size, make_reduce_grads(group))
            result["rows_errors"] = _row_checks(group)
        if info.rank == 0:
            torch.save(result, out / "rank0.pt")
    elif scenario == "hang":
        _hang(float(sys.argv[3]))
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main()
