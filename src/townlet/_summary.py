"""Short reprs and JSON-ready ``to_dict()`` for records that hold tensors or arrays.

A run record (``TrainResult``, ``BCRun``, ``RolloutBuffer``, …) holds parameters, Adam moments
or trajectories; attrs' default repr printed every value (40–50 kB for one small PPO run).
:func:`short_repr` prints tensors and arrays as ``dtype[shape]``, parameter mappings as their
tensor and element counts, and long sequences by length; :func:`record_dict` gives the same
description as JSON builtins (records nested as dicts, tensors and arrays as ``{"dtype",
"shape"}``; the values themselves are in the checkpoint or the npz). Torch-free: tensors are
recognised by duck typing, so this module never imports torch.
"""

from __future__ import annotations

import enum
import math
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

_SHORT = 4  # sequences and mappings up to this length are shown item by item in a repr
_LINE = 120  # a nested plain record's repr longer than this is cut after its first fields


def _is_array(value: object) -> bool:
    """A numpy array or a torch tensor (anything with ``shape``, ``dtype`` and ``numel`` or
    ``size``), without importing torch."""
    if isinstance(value, np.ndarray):
        return True
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "numel")


def _dtype_name(value: Any) -> str:
    return str(value.dtype).removeprefix("torch.")


def _shape(value: Any) -> list[int]:
    return [int(n) for n in value.shape]


def _is_param_map(value: object) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(_is_array(v) for v in value.values())


def _elements(value: Mapping[str, Any]) -> int:
    return sum(math.prod(_shape(v)) for v in value.values())


def describe(value: Any) -> str:
    """One short line for ``value``: ``float32[3, 4]`` for an array or tensor, ``{10 tensors,
    99,331 values}`` for a parameter mapping, ``(3 × ReplaySample)`` for a long sequence,
    ``{12 keys: 'a', 'b', …}`` for a long mapping, :func:`short_repr` for a record that uses
    it, the first fields of any other long record, ``repr`` otherwise."""
    if _is_array(value):
        return f"{_dtype_name(value)}{_shape(value)}"
    if _is_param_map(value):
        return f"{{{len(value)} tensors, {_elements(value):,} values}}"
    if attrs.has(type(value)):
        return _record_line(value)
    if isinstance(value, tuple | list) and len(value) > _SHORT:
        kinds = sorted({type(item).__name__ for item in value})
        return f"({len(value)} × {'/'.join(kinds)})"
    if isinstance(value, tuple | list):
        inner = ", ".join(describe(item) for item in value)
        return f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, Mapping) and len(value) > _SHORT:
        head = ", ".join(repr(k) for k in list(value)[:3])
        return f"{{{len(value)} keys: {head}, …}}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _record_line(value: Any) -> str:
    if getattr(type(value), "__repr__", None) is short_repr:
        return str(short_repr(value))
    text = repr(value)
    if len(text) <= _LINE:
        return text
    # A plain record with many fields (a telemetry record): its first fields, then "…".
    cut = text.rfind(", ", 0, _LINE)
    return f"{text[:cut]}, …)" if cut > 0 else f"{type(value).__name__}(…)"


def short_repr(self: Any) -> str:
    """``Cls(field=…, …)`` with every field through :func:`describe`; used as ``__repr__``."""
    parts = [f"{f.name}={describe(getattr(self, f.name))}" for f in attrs.fields(type(self))]
    return f"{type(self).__name__}({', '.join(parts)})"


def jsonable(value: Any) -> Any:
    """``value`` as JSON builtins: records via their own ``to_dict`` or field by field, tensors
    and arrays as ``{"dtype", "shape"}``, parameter mappings as ``{"tensors": {name: …},
    "values": n}``, numpy scalars as Python numbers, paths and enums as strings."""
    if _is_array(value):
        return {"dtype": _dtype_name(value), "shape": _shape(value)}
    if _is_param_map(value):
        return {
            "tensors": {str(k): jsonable(v) for k, v in value.items()},
            "values": _elements(value),
        }
    if attrs.has(type(value)):
        own = getattr(value, "to_dict", None)
        return own() if callable(own) else record_dict(value)
    if isinstance(value, Mapping | types.MappingProxyType):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path | enum.Enum):
        return str(value.value if isinstance(value, enum.Enum) else value)
    return value


def record_dict(self: Any) -> dict[str, Any]:
    """Every field of the record through :func:`jsonable`; used as ``to_dict``."""
    return {f.name: jsonable(getattr(self, f.name)) for f in attrs.fields(type(self))}
