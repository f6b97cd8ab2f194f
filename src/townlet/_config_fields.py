"""attrs field factories for config records: typed, bounded, with readable errors.

Shared by :mod:`townlet.config` and :mod:`townlet.world.config` so that every config key, in
every section, reports a bad value the same way (``clip_param: 1.5 is not in [0, 1]``).
"""

from __future__ import annotations

from typing import Any

import attrs

from townlet._validators import (
    Bounds,
    InstanceOf,
    OneOf,
    config_error,
    int_converter,
    number_converter,
)


def float_field(
    default: float,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    return attrs.field(
        default=default,
        converter=number_converter(config_error),
        validator=Bounds(config_error, ge=ge, gt=gt, le=le, lt=lt, style="range"),
    )


def unit_field(default: float) -> Any:
    return float_field(default, ge=0.0, le=1.0)


def int_field(default: int, *, ge: int | None = None, le: int | None = None) -> Any:
    return attrs.field(
        default=default,
        converter=int_converter(config_error),
        validator=Bounds(config_error, ge=ge, le=le, style="range"),
    )


def bool_field(default: bool) -> Any:
    return attrs.field(default=default, validator=InstanceOf(config_error, bool, "true or false"))


def one_of(options: tuple[str, ...], *, optional: bool = False) -> list[Any]:
    return [
        InstanceOf(config_error, str, "a string", optional=optional),
        OneOf(config_error, options),
    ]


def str_field(default: str) -> Any:
    return attrs.field(default=default, validator=InstanceOf(config_error, str, "a string"))
