"""The network as data: spec validation, init (torch-default and orthogonal), apply, seeding."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from townlet.policy.nn import rng  # noqa: E402
from townlet.policy.nn.network import apply, init_params, param_shapes  # noqa: E402
from townlet.policy.nn.spec import NetworkSpec, spec_from_dict  # noqa: E402

SPEC = NetworkSpec(map_shape=(4, 3, 3), feature_dim=5, action_dim=3, hidden_dim=16)


class ReferenceNet(nn.Module):  # type: ignore[misc]
    """The reference ConflictAwarePolicyNetwork's layer layout, written out for comparison."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        h = spec.hidden_dim
        self.map_encoder = nn.Sequential(nn.Flatten(), nn.Linear(spec.map_size, h), nn.ReLU())
        self.feature_encoder = nn.Sequential(nn.Linear(spec.feature_dim, h), nn.ReLU())
        self.shared = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU())
        self.policy_head = nn.Linear(h, spec.action_dim)
        self.value_head = nn.Linear(h, 1)

    def forward(self, maps: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.cat([self.map_encoder(maps), self.feature_encoder(feats)], dim=-1)
        x = self.shared(x)
        return self.policy_head(x), self.value_head(x).squeeze(-1)


def test_spec_validates_fields() -> None:
    with pytest.raises(ValueError, match="map_shape must be three non-negative ints"):
        NetworkSpec(map_shape=(4, 3), feature_dim=5, action_dim=3)
    with pytest.raises(ValueError, match="map_shape"):
        NetworkSpec(map_shape=(4, -1, 3), feature_dim=5, action_dim=3)
    with pytest.raises(ValueError):
        NetworkSpec(feature_dim=0, action_dim=3)
    with pytest.raises(ValueError):
        NetworkSpec(feature_dim=2, action_dim=3, activation="gelu")  # type: ignore[arg-type]
    assert NetworkSpec(feature_dim=2, action_dim=3).has_map is False
    assert SPEC.map_size == 36 and SPEC.has_map


def test_spec_dict_round_trip() -> None:
    data = SPEC.to_dict()
    assert data["map_shape"] == [4, 3, 3]
    assert spec_from_dict(data) == SPEC
    with pytest.raises(ValueError, match="unknown keys"):
        spec_from_dict({**data, "dropout": 0.1})


def test_param_shapes_with_and_without_map() -> None:
    assert param_shapes(SPEC) == {
        "map_encoder.1.weight": (16, 36),
        "map_encoder.1.bias": (16,),
        "feature_encoder.0.weight": (16, 5),
        "feature_encoder.0.bias": (16,),
        "shared.0.weight": (16, 32),
        "shared.0.bias": (16,),
        "policy_head.weight": (3, 16),
        "policy_head.bias": (3,),
        "value_head.weight": (1, 16),
        "value_head.bias": (1,),
    }
    flat = NetworkSpec(map_shape=(0, 0, 0), feature_dim=4, action_dim=2, hidden_dim=8)
    shapes = param_shapes(flat)
    assert "map_encoder.1.weight" not in shapes
    assert shapes["shared.0.weight"] == (8, 8)
    params = init_params(flat, 0)
    assert {k: tuple(v.shape) for k, v in params.items()} == shapes


@pytest.mark.parametrize("seed", [0, 7])
def test_default_init_equals_reference_module_under_same_seed(seed: int) -> None:
    params = init_params(SPEC, seed)
    torch.manual_seed(seed)
    ref = ReferenceNet(SPEC)
    state = ref.state_dict()
    assert list(params) == list(state)
    for name, tensor in params.items():
        assert torch.equal(tensor, state[name]), name
        assert tensor.dtype == torch.float32 and not tensor.requires_grad


def test_apply_matches_reference_forward() -> None:
    params = init_params(SPEC, 3)
    ref = ReferenceNet(SPEC)
    ref.load_state_dict(params)
    gen = torch.Generator().manual_seed(0)
    maps, feats = torch.randn(6, 4, 3, 3, generator=gen), torch.randn(6, 5, generator=gen)
    logits, values = apply(params, maps, feats, spec=SPEC)
    ref_logits, ref_values = ref(maps, feats)
    assert logits.shape == (6, 3) and values.shape == (6,)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(values, ref_values, rtol=0, atol=1e-6)
    flat_logits, _ = apply(params, maps.reshape(6, -1), feats, spec=SPEC)
    torch.testing.assert_close(flat_logits, logits)


def test_apply_without_map_branch_and_tanh() -> None:
    spec = NetworkSpec(feature_dim=4, action_dim=2, hidden_dim=8, activation="tanh")
    params = init_params(spec, 0)
    feats = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    logits, values = apply(params, None, feats, spec=spec)
    hidden = torch.tanh(
        feats @ params["feature_encoder.0.weight"].T + params["feature_encoder.0.bias"]
    )
    hidden = torch.tanh(hidden @ params["shared.0.weight"].T + params["shared.0.bias"])
    expected = hidden @ params["policy_head.weight"].T + params["policy_head.bias"]
    torch.testing.assert_close(logits, expected)
    assert values.shape == (5,)


def test_apply_requires_maps_when_spec_has_map() -> None:
    with pytest.raises(ValueError, match="maps is None"):
        apply(init_params(SPEC, 0), None, torch.zeros(2, 5), spec=SPEC)


def test_default_init_distribution_matches_torch_linear() -> None:
    spec = NetworkSpec(map_shape=(4, 11, 11), feature_dim=36, action_dim=8)
    params = init_params(spec, 11)
    for name in ("map_encoder.1.weight", "shared.0.weight", "feature_encoder.0.weight"):
        w = params[name]
        bound = 1.0 / math.sqrt(w.shape[1])
        assert w.abs().max() <= bound
        assert abs(w.mean().item()) < 0.02 * bound
        # U(-b, b) has std b/√3.
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_orthogonal_init_gains_and_zero_biases() -> None:
    spec = NetworkSpec(
        map_shape=(1, 2, 2), feature_dim=6, action_dim=3, hidden_dim=8, init="orthogonal"
    )
    params = init_params(spec, 0)
    for name, tensor in params.items():
        if name.endswith("bias"):
            assert torch.count_nonzero(tensor) == 0, name
    w = params["shared.0.weight"]  # (8, 16): rows orthogonal with norm √2
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(8), atol=1e-5, rtol=0)
    pol = params["policy_head.weight"]  # (3, 8)
    torch.testing.assert_close(pol @ pol.T, 1e-4 * torch.eye(3), atol=1e-8, rtol=0)
    val = params["value_head.weight"]  # (1, 8)
    assert val.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    before = torch.get_rng_state()
    a, b, c = init_params(SPEC, 5), init_params(SPEC, 5), init_params(SPEC, 6)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["shared.0.weight"], c["shared.0.weight"])


def test_derived_seeds_are_deterministic_and_distinct() -> None:
    assert rng.derive_seed(3, 1, 2) == rng.derive_seed(3, 1, 2)
    assert (
        len(
            {
                rng.derive_seed(3),
                rng.derive_seed(3, 0),
                rng.derive_seed(3, 1),
                rng.derive_seed(4, 1),
            }
        )
        == 4
    )
    g1, g2 = rng.derive_generator(0, 5), rng.derive_generator(0, 5)
    assert torch.equal(torch.randperm(10, generator=g1), torch.randperm(10, generator=g2))


def test_spec_imports_without_torch_and_other_names_need_it() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is hidden for this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from townlet.policy.nn.spec import NetworkSpec\n"
        "import townlet.policy.nn as tnn\n"
        "print(tnn.NetworkSpec(feature_dim=2, action_dim=2).has_map)\n"
        "import townlet\n"
        "assert townlet.NetworkSpec is tnn.NetworkSpec\n"
        "from townlet.errors import TorchNotAvailableError\n"
        "try:\n"
        "    tnn.init_params\n"
        "except TorchNotAvailableError as exc:\n"
        "    print('blocked:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0] == "False"
    assert "blocked: townlet.policy.nn.init_params needs PyTorch" in out.stdout
