"""Error types: every input error is a ValueError, torch-missing carries an install hint."""

from __future__ import annotations

import pytest

import townlet
from townlet import errors


@pytest.mark.parametrize(
    "cls",
    [
        errors.ConfigError,
        errors.DTOValidationError,
        errors.ReplayDataError,
        errors.TelemetryError,
        errors.CheckpointError,
    ],
)
def test_input_errors_are_value_errors(cls: type[Exception]) -> None:
    assert issubclass(cls, ValueError)
    assert issubclass(cls, townlet.TownletError)


def test_torch_not_available_has_install_hint() -> None:
    exc = errors.TorchNotAvailableError("PPO training")
    assert isinstance(exc, ImportError)
    assert "PPO training needs PyTorch" in str(exc)
    assert "pip install 'townlet[torch]'" in str(exc)


def test_lazy_exports_resolve() -> None:
    for name in townlet.__all__:
        assert getattr(townlet, name) is not None


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = townlet.no_such_name  # type: ignore[attr-defined]
