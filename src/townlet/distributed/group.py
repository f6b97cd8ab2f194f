"""The process group of a ``torchrun`` launch and the few collectives townlet uses.

:class:`Collective` names this process's place in a started group (``LOCAL`` is the single
process: every helper here is then the identity and touches no ``torch.distributed`` state).
The backend follows the device: NCCL for CUDA, gloo otherwise. The group's timeout bounds every
collective, so a rank that dies or hangs ends its peers with :class:`PeerFailedError` instead of
a hang.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

from townlet.distributed.launch import DEFAULT_TIMEOUT_S, LOCAL, Collective, LaunchInfo
from townlet.errors import TrainingFailedError

T = TypeVar("T")

SPIN_WAIT_S = 0.02
"""How long a rank polls a CPU (gloo) all-reduce for completion, yielding the core between
polls, before it blocks in ``wait()``. A blocked rank lets its core go idle, and waking it when
the peer's data arrives costs as much as the transfer on a small buffer (measured on a 2-core
VM: a 1 MB gradient all-reduce between two minibatch steps took 3–5 ms blocking, 2.0 ms
polling); past this budget the wait blocks, bounded by the group's timeout as before."""

_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


class PeerFailedError(TrainingFailedError):
    """A collective failed: another rank died, hung past the timeout, or could not be reached."""


def backend_for(device: str | torch.device) -> str:
    """``"nccl"`` for a CUDA device, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def start_process_group(
    info: LaunchInfo,
    *,
    device: str | torch.device = "cpu",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Collective:
    """Join the launch's process group (``env://`` rendezvous: ``MASTER_ADDR``/``MASTER_PORT``)
    with the backend for ``device`` and a ``timeout_s`` bound on every collective; :data:`LOCAL`
    without starting anything when ``info`` is a single process. On CUDA the process uses GPU
    ``local_rank``. Raises :class:`PeerFailedError` when the peers do not all arrive in time."""
    if not info.distributed:
        return LOCAL
    if timeout_s <= 0:
        raise ValueError(f"process-group timeout must be > 0 seconds, got {timeout_s}")
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    try:
        dist.init_process_group(
            backend,
            rank=info.rank,
            world_size=info.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except (RuntimeError, TimeoutError) as exc:
        raise PeerFailedError(_peer_message(info.rank, info.world_size, exc)) from exc
    return Collective(rank=info.rank, world_size=info.world_size, backend=backend)


def stop_process_group(group: Collective) -> None:
    """Leave the process group ``group`` started (nothing for :data:`LOCAL`)."""
    if group.backend is not None and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(
    info: LaunchInfo, *, device: str | torch.device = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S
) -> Iterator[Collective]:
    """:func:`start_process_group` for the ``with`` block, :func:`stop_process_group` after."""
    group = start_process_group(info, device=device, timeout_s=timeout_s)
    try:
        yield group
    finally:
        stop_process_group(group)


def _peer_message(rank: int, world_size: int, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # gloo prefixes "[<source file>:<line>] " and appends advice; keep what happened.
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h):\d+\]\s*", "", text)
    detail = text.split(". ")[0][:160]
    return (
        f"rank {rank} of {world_size}: a peer process failed or timed out "
        f"(a collective did not complete: {detail})"
    )


@contextlib.contextmanager
def peer_failures(group: Collective) -> Iterator[None]:
    """Turn the errors a collective raises when a peer is gone (``torch.distributed``'s
    ``DistError`` family and gloo's ``RuntimeError``) into one :class:`PeerFailedError`."""
    try:
        yield
    except PeerFailedError:
        raise
    except (dist.DistError, RuntimeError, TimeoutError) as exc:
        if group.backend is None:
            raise
        raise PeerFailedError(_peer_message(group.rank, group.world_size, exc)) from exc


def all_reduce_(group: Collective, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` in place over the ranks (``op``: ``"sum"`` or ``"max"``) and return
    it; ``tensor`` itself on one process. On gloo the wait polls for :data:`SPIN_WAIT_S`
    before it blocks; NCCL enqueues on the stream and returns. Raises
    :class:`PeerFailedError` when a peer is gone."""
    if group.backend is None:
        return tensor
    reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
    with peer_failures(group):
        if group.backend == "nccl":
            dist.all_reduce(tensor, op=reduce_op)
            return tensor
        work = dist.all_reduce(tensor, op=reduce_op, async_op=True)
        assert work is not None  # async_op=True returns the work handle
        deadline = time.perf_counter() + SPIN_WAIT_S
        while not work.is_completed() and time.perf_counter() < deadline:
            _yield()
        work.wait()
    return tensor


def all_reduce_sum(group: Collective, values: Sequence[float]) -> list[float]:
    """Element-wise sums of ``values`` over the ranks (float64; ``values`` itself on one
    process). For global counts: transitions, frames, events."""
    if group.backend is None:
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_device(group))
    return [float(v) for v in all_reduce_(group, tensor).tolist()]


def all_reduce_max(group: Collective, values: Sequence[float]) -> list[float]:
    """Element-wise maxima of ``values`` over the ranks (float64; ``values`` itself on one
    process). With ``[n, -n]`` it gives the largest and (negated) smallest ``n`` of any rank."""
    if group.backend is None:
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_device(group))
    return [float(v) for v in all_reduce_(group, tensor, "max").tolist()]


def all_gather_objects(group: Collective, value: T) -> list[T]:
    """``value`` of every rank, in rank order (``[value]`` on one process). Values are small
    picklable records (counts, file names), exchanged between the run's own processes."""
    if group.backend is None:
        return [value]
    gathered: list[T] = [value] * group.world_size
    with peer_failures(group):
        dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(group: Collective, value: T) -> T:
    """Rank 0's ``value`` on every rank (``value`` on one process)."""
    if group.backend is None:
        return value
    box = [value]
    with peer_failures(group):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(group: Collective) -> None:
    """Wait until every rank arrives (nothing on one process)."""
    if group.backend is None:
        return
    with peer_failures(group):
        dist.barrier()


def _device(group: Collective) -> torch.device:
    if group.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
