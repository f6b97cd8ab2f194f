"""A tensor function captured once as a CUDA graph on static buffers, then replayed.

On a GPU a minibatch update of the Townlet network is launch-bound (about 4 ms whatever the
minibatch size, docs/gpu.md); a CUDA graph replays all of its kernels with one launch. The
graph reads and writes fixed buffers, so each replay copies the arguments into the static input
buffers and returns *fresh copies* of the static outputs: a caller that keeps an earlier result
(a state it may still read) never sees it overwritten by the next replay.

``emulate=True`` runs the same buffer protocol without a graph (the function is re-run on the
static inputs at each replay): it is how the CPU test suite checks the copy-in/copy-out logic
that the GPU path relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

TensorFn = Callable[..., Sequence[torch.Tensor]]
"""``fn(*tensors) -> tensors``: a pure function of a flat list of tensors."""

_WARMUP_RUNS = 3


@attrs.frozen(kw_only=True, eq=False)
class CapturedGraph:
    """``fn`` captured on ``inputs`` (static buffers), writing ``outputs``; ``graph`` is None
    when emulated."""

    fn: TensorFn
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]
    graph: Any


def capture_graph(
    fn: TensorFn, example: Sequence[torch.Tensor], *, emulate: bool = False
) -> CapturedGraph:
    """Capture ``fn`` on static copies of ``example`` (its arguments: shapes, dtypes, device).

    The capture follows torch's recipe: a few warm-up runs on a side stream (so that lazy
    initialisation — cuBLAS handles, autograd's device threads — happens outside the capture),
    then one run under ``torch.cuda.graph``. Raises whatever torch raises when ``fn`` cannot be
    captured (a host sync, a CPU tensor, an unsupported op); the caller decides what to do.
    """
    inputs = tuple(t.detach().clone() for t in example)
    if emulate:
        outputs = tuple(o.detach().clone() for o in fn(*inputs))
        return CapturedGraph(fn=fn, inputs=inputs, outputs=outputs, graph=None)
    side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(_WARMUP_RUNS):
            fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = tuple(fn(*inputs))
    return CapturedGraph(fn=fn, inputs=inputs, outputs=outputs, graph=graph)


def replay_graph(captured: CapturedGraph, args: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Run the captured function on ``args`` (same shapes and dtypes as the example): copy them
    into the static inputs, replay, and return new tensors holding the outputs.

    No host synchronisation: the copies and the replay are queued on the current stream.
    """
    torch._foreach_copy_(list(captured.inputs), list(args))
    if captured.graph is None:
        torch._foreach_copy_(list(captured.outputs), list(captured.fn(*captured.inputs)))
    else:
        captured.graph.replay()
    fresh = [torch.empty_like(o) for o in captured.outputs]
    torch._foreach_copy_(fresh, list(captured.outputs))
    return fresh
