"""The opt-in compiled minibatch update: same signature as the eager one, eager when it cannot be.

:func:`compile_update` takes a pure eager update ``update(state, minibatch, cfg, *,
value_only=False) -> (state, stats vector)`` and an :class:`UpdateAdapter` that says how to
see one call as an :class:`~townlet.policy.nn.update_program.UpdateProgram` over tensors, and
returns a :class:`CompiledUpdate` with the eager signature. Modes (:data:`COMPILE_MODES`):

* ``none`` — the eager update, untouched (the default);
* ``inductor`` — ``torch.compile`` (default mode) of the tensor update, gradients by
  ``torch.func`` so that the graph has no break; learning rate and step counts are tensors, so
  a schedule does not recompile;
* ``cudagraph`` — on CUDA, an explicit ``torch.cuda.CUDAGraph`` capture of the tensor update on
  static buffers (:mod:`townlet.policy.nn.cuda_graph`), one graph per minibatch shape;
* ``auto`` — ``cudagraph`` on CUDA, ``none`` elsewhere.

Failure is never fatal: where compilation is unavailable (``cudagraph`` off CUDA, no C++
compiler, a torch whose Inductor breaks on the update — measured on an H200 with torch 2.11,
docs/gpu.md) or where the first compiled result differs from eager's, one
:class:`CompileFallbackWarning` is issued and every later call runs eagerly. The first call of
each compiled shape is checked against the eager update (one extra update and one device sync
per shape per run) so that a silently wrong compilation cannot train a run.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import torch

from townlet.config import COMPILE_MODES
from townlet.errors import CompileFallbackWarning
from townlet.policy.nn.adam import AdamState
from townlet.policy.nn.cuda_graph import CapturedGraph, capture_graph, replay_graph
from townlet.policy.nn.network import Params
from townlet.policy.nn.update_program import (
    GradMethod,
    Inputs,
    UpdateProgram,
    UpdateRule,
    adam_scalars,
    run_update,
)

MAX_COMPILED_SHAPES = 16
"""Compiled variants (minibatch shapes × static settings) kept per update; further ones run
eagerly. A run sees two or three (full minibatches, a short last one, value-only warm-up)."""

# How close the first compiled result must be to eager's (float32 on CPU or GPU).
_VERIFY_RTOL, _VERIFY_ATOL = 1e-3, 1e-5


class TrainState(Protocol):
    """What a compiled update reads and rebuilds (``PPOState``, ``BCState``)."""

    @property
    def params(self) -> Params:
        """The network parameters the update trains."""
        ...

    @property
    def adam_state(self) -> AdamState:
        """Adam's moments and per-parameter step counts."""
        ...

    @property
    def updates(self) -> int:
        """Minibatch updates applied so far."""
        ...


S = TypeVar("S", bound=TrainState)

ProgramBuilder = Callable[[Hashable, tuple[str, ...], GradMethod], UpdateProgram]
"""``build(key, parameter names, grad method) -> UpdateProgram`` for a :class:`UpdateCase` key."""


@attrs.frozen(kw_only=True, eq=False)
class UpdateCase:
    """One call as the compiled update sees it: ``key`` (hashable; everything the program
    depends on besides the tensors), the minibatch as ``inputs`` and the learning rate."""

    key: Hashable
    inputs: Inputs
    lr: float


@attrs.frozen(kw_only=True)
class UpdateAdapter:
    """How to compile one kind of update: ``describe(state, minibatch, cfg, value_only)`` gives
    the :class:`UpdateCase` of a call, ``build`` the program of a case's key."""

    describe: Callable[[Any, Any, Any, bool], UpdateCase]
    build: ProgramBuilder


@functools.lru_cache(maxsize=64)
def static_config(cfg: Any) -> Any:
    """``cfg`` with ``learning_rate`` set to 1: the part of a config a compiled update bakes in
    (the learning rate travels as a tensor), for the :class:`UpdateCase` key."""
    return attrs.evolve(cfg, learning_rate=1.0)


def resolve_compile_mode(mode: str, device: torch.device) -> str:
    """``auto`` → ``cudagraph`` on CUDA, else ``none``; other modes unchanged.
    Raises ``ValueError`` for a mode not in :data:`COMPILE_MODES`."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile: expected one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode == "auto":
        return "cudagraph" if device.type == "cuda" else "none"
    return mode


@attrs.frozen(kw_only=True, eq=False)
class _Variant:
    program: UpdateProgram
    run: Callable[[list[torch.Tensor]], list[torch.Tensor]]


def _shape_key(tensors: Sequence[torch.Tensor | None]) -> tuple[Hashable, ...]:
    return tuple(None if t is None else (t.shape, t.dtype, t.device) for t in tensors)


def _flat_update(
    program: UpdateProgram, none_mask: tuple[bool, ...], *flat: torch.Tensor
) -> list[torch.Tensor]:
    """:func:`run_update` over one flat tensor list ``[params…, m…, v…, scalars, inputs…]``
    (absent inputs left out, ``none_mask`` says where), returning ``[p…, m…, v…, stats]``."""
    n, k = len(program.names), len(program.rule.wrt)
    present = iter(flat[n + 2 * k + 1 :])
    inputs = tuple(None if absent else next(present) for absent in none_mask)
    new_p, new_m, new_v, stats = run_update(
        program, flat[:n], flat[n : n + k], flat[n + k : n + 2 * k], flat[n + 2 * k], inputs
    )
    return [*new_p, *new_m, *new_v, stats]


def _scalars(lr: float, steps: Sequence[int], rule: UpdateRule, like: torch.Tensor) -> torch.Tensor:
    values = torch.tensor(adam_scalars(lr, steps, rule), dtype=like.dtype)
    if like.device.type != "cuda":
        return values.to(like.device)
    # From pinned memory the copy is queued without waiting for the stream (from pageable
    # memory the driver may synchronise); the host allocator keeps the block until it is done.
    return values.pin_memory().to(like.device, non_blocking=True)


def _is_local(reduce_grads: Callable[..., Any] | None) -> bool:
    """Whether ``reduce_grads`` reduces nothing: None, or the single-process identity of
    ``townlet.distributed`` (``keep_local``, #12), recognised by name so that this module does
    not import the distributed one."""
    if reduce_grads is None:
        return True
    name = (getattr(reduce_grads, "__module__", ""), getattr(reduce_grads, "__qualname__", ""))
    return name == ("townlet.distributed.reduce", "keep_local")


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a, b, rtol=_VERIFY_RTOL, atol=_VERIFY_ATOL, equal_nan=True))


class CompiledUpdate:
    """An update with the eager update's signature that runs a compiled program when it can.

    Holds only caches (compiled variants, whether it fell back): its results are a pure
    function of its arguments, as the eager update's are. Build it with :func:`compile_update`.
    """

    def __init__(
        self,
        eager: Callable[..., Any],
        adapter: UpdateAdapter,
        mode: str,
        *,
        emulate_graphs: bool = False,
    ) -> None:
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile: expected one of {', '.join(COMPILE_MODES)}, got {mode!r}")
        self.eager = eager
        self.adapter = adapter
        self.mode = mode
        # Tests: run cudagraph's static-buffer protocol on any device, without a graph.
        self.emulate_graphs = emulate_graphs
        self.fallback_reason: str | None = None
        self._variants: dict[Hashable, _Variant] = {}

    def __call__(
        self,
        state: S,
        minibatch: Any,
        cfg: Any,
        *,
        value_only: bool = False,
        reduce_grads: Callable[..., Any] | None = None,
        donate: bool = False,
    ) -> tuple[S, torch.Tensor]:
        kwargs: dict[str, Any] = {"value_only": True} if value_only else {}
        if donate:
            # The eager update may then write the state in place; the compiled one never
            # writes its inputs, so it has no use for the permission.
            kwargs["donate"] = True
        if not _is_local(reduce_grads):
            # A cross-process all-reduce cannot live inside a captured graph; eager keeps it.
            kwargs["reduce_grads"] = reduce_grads
            if self.mode != "none":
                self._fall_back("a reduce_grads hook (data-parallel all-reduce) cannot be compiled")
        device = next(iter(state.params.values())).device
        mode = resolve_compile_mode(self.mode, device)
        if mode == "none" or self.fallback_reason is not None:
            return self._eager(state, minibatch, cfg, kwargs)
        if mode == "cudagraph" and device.type != "cuda" and not self.emulate_graphs:
            self._fall_back(f"cudagraph needs a CUDA device, the parameters are on {device}")
            return self._eager(state, minibatch, cfg, kwargs)
        try:
            return self._compiled(state, minibatch, cfg, value_only, mode, kwargs)
        except Exception as exc:  # any failure of the compiled path degrades to eager
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._fall_back(f"{type(exc).__name__}: {first[:200]}")
            return self._eager(state, minibatch, cfg, kwargs)

    def _eager(
        self, state: S, minibatch: Any, cfg: Any, kwargs: dict[str, Any]
    ) -> tuple[S, torch.Tensor]:
        result: tuple[S, torch.Tensor] = self.eager(state, minibatch, cfg, **kwargs)
        return result

    def _fall_back(self, reason: str) -> None:
        if self.fallback_reason is None:
            self.fallback_reason = reason
            warnings.warn(
                f"compile={self.mode}: {reason}; the minibatch update runs eagerly",
                CompileFallbackWarning,
                stacklevel=4,
            )

    def _compiled(
        self, state: S, minibatch: Any, cfg: Any, value_only: bool, mode: str, kw: dict[str, Any]
    ) -> tuple[S, torch.Tensor]:
        case = self.adapter.describe(state, minibatch, cfg, value_only)
        names = tuple(state.params)
        # Parameter shapes follow from the spec in case.key; their dtype and device may not.
        first = state.params[names[0]]
        key = (case.key, names, first.dtype, first.device, _shape_key(case.inputs))
        variant = self._variants.get(key)
        new = variant is None
        if variant is None:
            if len(self._variants) >= MAX_COMPILED_SHAPES:
                return self._eager(state, minibatch, cfg, kw)
            variant = self._new_variant(case, names, mode, state)
        new_state, stats = _run_variant(variant, state, case)
        if new:
            self._verify(new_state, stats, state, minibatch, cfg, kw)
            self._variants[key] = variant
        return new_state, stats

    def _new_variant(
        self, case: UpdateCase, names: tuple[str, ...], mode: str, state: S
    ) -> _Variant:
        grads: GradMethod = "func" if mode == "inductor" else "autograd"
        program = self.adapter.build(case.key, names, grads)
        none_mask = tuple(t is None for t in case.inputs)
        fn = functools.partial(_flat_update, program, none_mask)
        if mode == "inductor":
            compiled = torch.compile(fn, dynamic=False)
            return _Variant(program=program, run=lambda flat: list(compiled(*flat)))
        example = _flat_args(program, state, case)
        captured = capture_graph(fn, example, emulate=self.emulate_graphs)
        return _Variant(program=program, run=functools.partial(_replay, captured))

    def _verify(
        self,
        new_state: S,
        stats: torch.Tensor,
        state: S,
        minibatch: Any,
        cfg: Any,
        kw: dict[str, Any],
    ) -> None:
        ref_state, ref_stats = self._eager(state, minibatch, cfg, kw)
        same = _close(stats, ref_stats) and all(
            _close(new_state.params[k], ref_state.params[k]) for k in ref_state.params
        )
        if not same:
            raise RuntimeError("the compiled update's first result differs from the eager update")


def _replay(captured: CapturedGraph, flat: list[torch.Tensor]) -> list[torch.Tensor]:
    return replay_graph(captured, flat)


def _flat_args(program: UpdateProgram, state: TrainState, case: UpdateCase) -> list[torch.Tensor]:
    wrt, adam = program.rule.wrt, state.adam_state
    like = state.params[wrt[0]]
    return [
        *(state.params[k] for k in program.names),
        *(adam.exp_avg[k] for k in wrt),
        *(adam.exp_avg_sq[k] for k in wrt),
        _scalars(case.lr, [adam.steps[k] for k in wrt], program.rule, like),
        *(t for t in case.inputs if t is not None),
    ]


def _run_variant(variant: _Variant, state: S, case: UpdateCase) -> tuple[S, torch.Tensor]:
    """Run a compiled variant and rebuild the state as the eager update would."""
    program, adam = variant.program, state.adam_state
    wrt, k = program.rule.wrt, len(program.rule.wrt)
    out = variant.run(_flat_args(program, state, case))
    new_adam = attrs.evolve(
        adam,
        steps={**adam.steps, **{name: adam.steps[name] + 1 for name in wrt}},
        exp_avg={**adam.exp_avg, **dict(zip(wrt, out[k : 2 * k], strict=True))},
        exp_avg_sq={**adam.exp_avg_sq, **dict(zip(wrt, out[2 * k : 3 * k], strict=True))},
    )
    params = {**state.params, **dict(zip(wrt, out[:k], strict=True))}
    new_state = attrs.evolve(state, params=params, adam_state=new_adam, updates=state.updates + 1)  # type: ignore[misc]
    return new_state, out[3 * k]


def compile_update(
    eager: Callable[..., Any], adapter: UpdateAdapter, mode: str, *, emulate_graphs: bool = False
) -> CompiledUpdate:
    """``eager`` wrapped for ``mode`` (one of :data:`COMPILE_MODES`); see the module docstring.
    Nothing is compiled until the first call (compilation happens per minibatch shape).
    ``emulate_graphs`` (for tests) runs ``cudagraph``'s buffer protocol without a CUDA graph."""
    return CompiledUpdate(eager, adapter, mode, emulate_graphs=emulate_graphs)
