"""The compiled minibatch update: equals eager, keeps the eager contract, one warning on fallback.

The CUDA-graph path is exercised on CPU through ``emulate_graphs`` (the same static-buffer
copy-in/replay/copy-out protocol without a graph); the real capture needs a GPU
(``tools/bench_device.py`` checks it there against eager).
"""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import pytest

torch = pytest.importorskip("torch")

from townlet.config import BCConfig, PPOConfig  # noqa: E402
from townlet.policy.nn.adam import AdamConfig, adam_init, adam_update  # noqa: E402
from townlet.policy.nn.compiled import (  # noqa: E402
    CompiledUpdate,
    CompileFallbackWarning,
    UpdateAdapter,
    compile_update,
    resolve_compile_mode,
)
from townlet.policy.nn.network import init_params  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec  # noqa: E402
from townlet.policy.nn.update_program import UpdateRule, adam_scalars, tensor_adam  # noqa: E402
from townlet.policy.training.strategies.bc.compiled import make_bc_update  # noqa: E402
from townlet.policy.training.strategies.bc.step import (  # noqa: E402
    bc_minibatch_update,
    init_bc_state,
)
from townlet.policy.training.strategies.ppo.compiled import (  # noqa: E402
    PPO_ADAPTER,
    make_ppo_update,
    ppo_stats,
)
from townlet.policy.training.strategies.ppo.functional import PPOMinibatch  # noqa: E402
from townlet.policy.training.strategies.ppo.step import (  # noqa: E402
    PPOState,
    init_ppo_state,
    ppo_minibatch_update,
)

SPEC = NetworkSpec(map_shape=(2, 3, 3), feature_dim=4, action_dim=3, hidden_dim=16)
SEPARATE = NetworkSpec(feature_dim=4, action_dim=3, hidden_dim=16, critic="separate")


def _minibatch(seed: int, n: int = 8) -> PPOMinibatch:
    gen = torch.Generator().manual_seed(seed)
    return PPOMinibatch(
        maps=torch.randn(n, 2, 3, 3, generator=gen),
        features=torch.randn(n, 4, generator=gen),
        actions=torch.randint(0, 3, (n,), generator=gen),
        old_log_probs=-torch.rand(n, generator=gen) - 0.6,
        advantages=torch.randn(n, generator=gen),
        returns=torch.randn(n, generator=gen),
        old_values=torch.randn(n, generator=gen),
    )


# Full minibatches, a value-only (critic warm-up) one, a short last one, a second learning rate.
_SCHEDULE = [
    (8, False, 3e-4),
    (8, True, 3e-4),
    (5, False, 3e-4),
    (8, False, 1e-3),
    (8, False, 3e-4),
]


def _run_both(update: Any, spec: NetworkSpec) -> list[tuple[PPOState, Any, PPOState, Any]]:
    eager = compiled = init_ppo_state(spec, seed=3)
    steps = []
    for i, (n, value_only, lr) in enumerate(_SCHEDULE):
        mb, cfg = _minibatch(i, n), PPOConfig(learning_rate=lr)
        eager, e_values = ppo_minibatch_update(eager, mb, cfg, value_only=value_only)
        compiled, c_values = update(compiled, mb, cfg, value_only=value_only)
        steps.append((eager, e_values, compiled, c_values))
    return steps


def _assert_states_close(a: PPOState, b: PPOState, tol: float = 1e-5) -> None:
    assert a.updates == b.updates
    assert dict(a.adam_state.steps) == dict(b.adam_state.steps)
    for k in a.params:
        torch.testing.assert_close(a.params[k], b.params[k], rtol=tol, atol=tol)
        torch.testing.assert_close(a.adam_state.exp_avg[k], b.adam_state.exp_avg[k])
        torch.testing.assert_close(a.adam_state.exp_avg_sq[k], b.adam_state.exp_avg_sq[k])


@pytest.mark.parametrize("spec", [SPEC, SEPARATE], ids=["map-shared", "flat-separate"])
def test_graph_protocol_equals_eager_through_warmup_short_batch_and_lr_change(
    spec: NetworkSpec,
) -> None:
    update = make_ppo_update("cudagraph", emulate_graphs=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        steps = _run_both(update, spec)
    for eager, e_values, compiled, c_values in steps:
        _assert_states_close(eager, compiled)
        torch.testing.assert_close(c_values, e_values, rtol=1e-5, atol=1e-5)
    # value-only advanced only the value head's step counts, as eager Adam does
    assert steps[-1][2].adam_state.steps["value_head.bias"] == 5
    assert steps[-1][2].adam_state.steps["shared.0.weight"] == 4
    assert isinstance(update, CompiledUpdate)
    # one variant per static setting and shape; the learning rate change compiled nothing new
    assert len(update._variants) == 3
    assert update.fallback_reason is None


def test_replays_never_overwrite_earlier_results_or_inputs() -> None:
    update = make_ppo_update("cudagraph", emulate_graphs=True)
    start = init_ppo_state(SPEC, seed=0)
    before = {k: v.clone() for k, v in start.params.items()}
    first, first_values = update(start, _minibatch(0), PPOConfig())
    kept = {k: v.clone() for k, v in first.params.items()}
    kept_values = first_values.clone()
    second, _ = update(first, _minibatch(1), PPOConfig())
    update(second, _minibatch(2), PPOConfig())
    for k in before:
        assert torch.equal(start.params[k], before[k])
        assert torch.equal(first.params[k], kept[k])
    assert torch.equal(first_values, kept_values)
    assert start.updates == 0 and first.updates == 1 and second.updates == 2


def test_bc_graph_protocol_equals_eager_with_weight_decay() -> None:
    update = make_bc_update("cudagraph", emulate_graphs=True)
    cfg = BCConfig(learning_rate=1e-2, weight_decay=0.01)
    eager = compiled = init_bc_state(SEPARATE, seed=1)
    for seed, n in ((0, 8), (1, 8), (2, 3)):
        mb = _minibatch(seed, n)
        batch = (None, mb.features, mb.actions)
        eager, e_values = bc_minibatch_update(eager, batch, cfg)
        compiled, c_values = update(compiled, batch, cfg)
        torch.testing.assert_close(c_values, e_values, rtol=1e-5, atol=1e-5)
        for k in eager.params:
            torch.testing.assert_close(compiled.params[k], eager.params[k], rtol=1e-5, atol=1e-5)
    # the critic is not trained by BC: untouched, moments and counts included
    assert torch.equal(
        compiled.params["critic.shared.0.weight"], eager.params["critic.shared.0.weight"]
    )
    assert compiled.adam_state.steps["value_head.weight"] == 0


def test_none_is_the_eager_update_itself() -> None:
    assert make_ppo_update("none") is ppo_minibatch_update
    assert make_bc_update() is bc_minibatch_update


def test_resolve_compile_mode() -> None:
    assert resolve_compile_mode("auto", torch.device("cpu")) == "none"
    assert resolve_compile_mode("auto", torch.device("cuda")) == "cudagraph"
    assert resolve_compile_mode("inductor", torch.device("cpu")) == "inductor"
    with pytest.raises(ValueError, match="compile: expected one of none, inductor"):
        resolve_compile_mode("jit", torch.device("cpu"))
    with pytest.raises(ValueError, match="got 'jit'"):
        make_ppo_update("jit")


def _eager_run(update: Any, count: int = 3) -> tuple[PPOState, list[Any]]:
    state, values = init_ppo_state(SPEC, seed=0), []
    for i in range(count):
        state, v = update(state, _minibatch(i), PPOConfig())
        values.append(v)
    return state, values


def test_cudagraph_off_cuda_warns_once_and_is_exactly_eager() -> None:
    with pytest.warns(CompileFallbackWarning, match="cudagraph needs a CUDA device") as caught:
        state, values = _eager_run(make_ppo_update("cudagraph"))
    assert len(caught) == 1
    assert "the minibatch update runs eagerly" in str(caught[0].message)
    ref_state, ref_values = _eager_run(ppo_minibatch_update)
    for k in state.params:
        assert torch.equal(state.params[k], ref_state.params[k])
    assert all(torch.equal(a, b) for a, b in zip(values, ref_values, strict=True))


def test_compiler_failure_at_first_call_warns_once_and_continues_eager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What Inductor did on an H200 (docs/gpu.md): the first call raises from codegen.
    def broken(fn: Any, **_kwargs: Any) -> Any:
        def call(*_args: Any) -> Any:
            raise RuntimeError("InductorError: CompilationError\nNameError: in_ptr1")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    update = make_ppo_update("inductor")
    with pytest.warns(CompileFallbackWarning) as caught:
        state, _ = _eager_run(update)
    assert len(caught) == 1
    assert str(caught[0].message) == (
        "compile=inductor: RuntimeError: InductorError: CompilationError; "
        "the minibatch update runs eagerly"
    )
    ref_state, _ = _eager_run(ppo_minibatch_update)
    assert all(torch.equal(state.params[k], ref_state.params[k]) for k in state.params)


def test_a_compiled_result_that_differs_from_eager_is_refused() -> None:
    def wrong_stats(total: Any, aux: Any, norm: Any) -> Any:
        return ppo_stats(total, aux, norm) * 2.0

    def build(key: Any, names: Any, grads: Any) -> Any:
        return attrs.evolve(PPO_ADAPTER.build(key, names, grads), stats=wrong_stats)

    adapter = UpdateAdapter(describe=PPO_ADAPTER.describe, build=build)
    update = compile_update(ppo_minibatch_update, adapter, "cudagraph", emulate_graphs=True)
    with pytest.warns(CompileFallbackWarning, match="differs from the eager update"):
        _state, values = _eager_run(update)
    _ref_state, ref_values = _eager_run(ppo_minibatch_update)
    assert all(torch.equal(a, b) for a, b in zip(values, ref_values, strict=True))


def test_reduce_grads_hook_runs_eagerly_with_one_warning() -> None:
    seen: list[Any] = []

    def eager(
        state: Any, mb: Any, cfg: Any, *, value_only: bool = False, reduce_grads: Any = None
    ) -> Any:
        seen.append(reduce_grads)
        return ppo_minibatch_update(state, mb, cfg, value_only=value_only)

    def hook(grads: Any) -> Any:
        return grads

    update = compile_update(eager, PPO_ADAPTER, "cudagraph", emulate_graphs=True)
    with pytest.warns(CompileFallbackWarning, match="reduce_grads hook") as caught:
        state = init_ppo_state(SPEC, seed=0)
        for i in range(2):
            state, _ = update(state, _minibatch(i), PPOConfig(), reduce_grads=hook)
    assert len(caught) == 1 and seen == [hook, hook]


def test_tensor_adam_equals_adam_update_with_mixed_step_counts() -> None:
    params = dict(init_params(SPEC, 0))
    gen = torch.Generator().manual_seed(5)
    grads = {k: torch.randn(p.shape, generator=gen) for k, p in params.items()}
    state = adam_init(params)
    state = attrs.evolve(state, steps={k: (7 if "value" in k else 2) for k in params})
    cfg = AdamConfig(lr=3e-3, weight_decay=0.1)
    want_p, want_state = adam_update(grads, state, params, cfg)
    keys = list(params)
    rule = UpdateRule(wrt=tuple(keys), weight_decay=cfg.weight_decay)
    scalars = torch.tensor(adam_scalars(cfg.lr, [state.steps[k] for k in keys], rule))
    new_p, new_m, new_v = tensor_adam(
        [params[k] for k in keys],
        [grads[k] for k in keys],
        [state.exp_avg[k] for k in keys],
        [state.exp_avg_sq[k] for k in keys],
        scalars,
        rule,
    )
    for i, k in enumerate(keys):
        torch.testing.assert_close(new_p[i], want_p[k], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(new_m[i], want_state.exp_avg[k])
        torch.testing.assert_close(new_v[i], want_state.exp_avg_sq[k])


@pytest.mark.slow
def test_inductor_equals_eager_to_1e5() -> None:
    # torch.compile of the tensor update on CPU (a C++ compiler is needed; about a minute).
    update = make_ppo_update("inductor")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        steps = _run_both(update, SPEC)
    for eager, e_values, compiled, c_values in steps:
        _assert_states_close(eager, compiled)
        torch.testing.assert_close(c_values, e_values, rtol=1e-5, atol=1e-5)


def test_the_single_process_identity_hook_keeps_the_compiled_update() -> None:
    # townlet.distributed's keep_local (#12) reduces nothing: no fallback for it.
    def keep_local(grads: Any) -> Any:
        return grads

    keep_local.__module__ = "townlet.distributed.reduce"
    keep_local.__qualname__ = "keep_local"
    update = make_ppo_update("cudagraph", emulate_graphs=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        state, _ = update(
            init_ppo_state(SPEC, seed=0), _minibatch(0), PPOConfig(), reduce_grads=keep_local
        )
    assert isinstance(update, CompiledUpdate) and update.fallback_reason is None
    assert len(update._variants) == 1 and state.updates == 1
