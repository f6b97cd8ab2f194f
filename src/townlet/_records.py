"""Helpers over ``attrs`` records: map one function over every field of a record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

R = TypeVar("R")


def map_fields(fn: Callable[[Any], Any], record: R) -> R:
    """``record`` with ``fn`` applied to every field that is not None (a new record; ``record``
    is unchanged). Batch records list their fields once, here, instead of at every select,
    slice, reshape or device move."""
    fields = attrs.fields(type(record))  # type: ignore[arg-type]
    values = {f.name: getattr(record, f.name) for f in fields}
    return attrs.evolve(  # type: ignore[misc]
        record, **{name: fn(value) for name, value in values.items() if value is not None}
    )
