"""attrs field factories for config records: typed, bounded, with readable errors.

Shared by :mod:`townlet.config` and :mod:`townlet.world.config` so that every config key, in
every section, reports a bad value the same way (``clip_param: 1.5 is not in [0, 1]``).
Each factory takes a one-line ``help`` text, stored as the field's ``metadata["help"]``; the
configuration reference (``docs/configuration.md``) is generated from it by
``tools/gen_config_docs.py``.
"""

from __future__ import annotations

from typing import Any

import attrs

from townlet._validators import (
    Bounds,
    Finite,
    InstanceOf,
    OneOf,
    config_error,
    int_converter,
    number_converter,
)


def help_metadata(help: str) -> dict[str, str]:
    """The attrs ``metadata`` mapping that carries a field's one-line help text."""
    return {"help": help} if help else {}


def float_field(
    default: float,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    help: str = "",
) -> Any:
    """A finite float config field with optional bounds; ints are accepted, bools, strings,
    NaN and ±inf are not.

    Raises :class:`~townlet.errors.ConfigError` (at record construction) for a non-number, a
    non-finite number or a value outside the bounds.
    """
    return attrs.field(
        default=default,
        converter=number_converter(config_error),
        validator=[
            Bounds(config_error, ge=ge, gt=gt, le=le, lt=lt, style="range"),
            Finite(config_error),
        ],
        metadata=help_metadata(help),
    )


def unit_field(default: float, *, help: str = "") -> Any:
    """A float config field in ``[0, 1]`` (probabilities, coefficients, GAE λ and γ)."""
    return float_field(default, ge=0.0, le=1.0, help=help)


def int_field(default: int, *, ge: int | None = None, le: int | None = None, help: str = "") -> Any:
    """An integer config field with optional bounds; an integral float (``4.0``) is accepted.

    Raises :class:`~townlet.errors.ConfigError` for ``4.5``, a bool, a string or a value out of
    bounds.
    """
    return attrs.field(
        default=default,
        converter=int_converter(config_error),
        validator=Bounds(config_error, ge=ge, le=le, style="range"),
        metadata=help_metadata(help),
    )


def bool_field(default: bool, *, help: str = "") -> Any:
    """A boolean config field (``true``/``false``; ``0``/``1`` are rejected)."""
    return attrs.field(
        default=default,
        validator=InstanceOf(config_error, bool, "true or false"),
        metadata=help_metadata(help),
    )


def one_of(options: tuple[str, ...], *, optional: bool = False) -> list[Any]:
    """Validators for a string field that must be one of ``options`` (None passes if optional)."""
    return [
        InstanceOf(config_error, str, "a string", optional=optional),
        OneOf(config_error, options),
    ]


def str_field(default: str, *, help: str = "") -> Any:
    """A free string config field."""
    return attrs.field(
        default=default,
        validator=InstanceOf(config_error, str, "a string"),
        metadata=help_metadata(help),
    )
