"""The project's one cattrs converter: records ⇄ plain dicts/JSON, at the edges only.

* ``forbid_extra_keys=True``: an unknown key is an error that suggests the closest valid key.
* Strict scalars: a string is never an int or a float, a bool is never a number, a float is an
  int only when integral (``4.0`` → 4; ``4.5`` is rejected).
* ``Path`` ⇄ ``str``; tuples ⇄ lists; ``Literal`` values are checked against their options.
* :class:`~townlet.dto.policy.PPOTrainingResult` routes dynamic ``conflict.*``/``*_events`` keys
  into ``extras`` and flattens them back at the top level; its townlet extension fields are left
  out of the dict while they are None.

``to_dict``/``from_dict`` round-trip exactly, also through JSON. Every structuring failure is
reported as one error (``DTOValidationError`` unless the caller asks for another type) whose
message lists each problem as ``key.path: what is wrong``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import is_mapping, mapping_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from townlet._input_limits import loads_json
from townlet._validators import FieldValueError
from townlet.dto.policy import (
    EXTENSION_FIELDS,
    PPOTrainingResult,
    is_extra_key,
    unknown_field_message,
)
from townlet.errors import DTOValidationError, TownletInputError

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True)


def _kind(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a number, got {_kind(value)}")


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"expected an integer, got {_kind(value)}")


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {_kind(value)}")


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {_kind(value)}")


def _structure_path(value: Any, _: type) -> Path:
    if isinstance(value, str | Path):
        return Path(value)
    raise TypeError(f"expected a path string, got {_kind(value)}")


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _structure_literal(value: Any, tp: Any) -> Any:
    options = get_args(tp)
    if value in options and type(value) in {type(o) for o in options}:
        return value
    allowed = ", ".join(repr(o) for o in options)
    raise ValueError(f"{value!r} is not one of {allowed}")


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _tuple_hook_factory(tp: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
    item_type = get_args(tp)[0]
    item_hook = converter.get_structure_hook(item_type)

    def hook(value: Any, _: Any) -> tuple[Any, ...]:
        if isinstance(value, str) and item_type is str:
            return (value,)  # the reference took a bare string as a one-element list
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {_kind(value)}")
        items, errors = [], []
        for index, item in enumerate(value):
            try:
                items.append(item_hook(item, item_type))
            except Exception as exc:  # collected into one group below
                exc.add_note(IterableValidationNote(f"@ index {index}", index, item_type))
                errors.append(exc)
        if errors:
            raise cattrs.IterableValidationError(f"While structuring {tp}", errors, tp)
        return tuple(items)

    return hook


def _mapping_hook_factory(tp: Any) -> Callable[[Any, Any], Any]:
    base = mapping_structure_factory(tp, converter)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {_kind(value)}")
        return base(value, tp)

    return hook


def _attrs_hook_factory(cls: Any) -> Callable[[Any, Any], Any]:
    base = make_dict_structure_fn(cls, converter)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping of keys, got {_kind(value)}")
        return base(value, cls)

    return hook


_PPO_DECLARED = frozenset(f.name for f in attrs.fields(PPOTrainingResult)) - {"extras"}


def _make_ppo_hooks() -> tuple[Callable[[Any, Any], Any], Callable[[Any], dict[str, Any]]]:
    base_structure = make_dict_structure_fn(PPOTrainingResult, converter)
    base_unstructure = make_dict_unstructure_fn(PPOTrainingResult, converter)

    def structure(value: Any, cls: Any) -> PPOTrainingResult:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping of keys, got {_kind(value)}")
        declared: dict[str, Any] = {}
        extras: dict[str, Any] = {}
        for key, item in value.items():
            if key in _PPO_DECLARED:
                declared[key] = item
            elif isinstance(key, str) and is_extra_key(key):
                extras[key] = item
            else:
                raise DTOValidationError(unknown_field_message(PPOTrainingResult.__name__, key))
        declared["extras"] = extras
        return base_structure(declared, cls)

    def unstructure(record: PPOTrainingResult) -> dict[str, Any]:
        out = base_unstructure(record)
        extras = out.pop("extras")
        for name in EXTENSION_FIELDS:
            if out[name] is None:
                del out[name]
        out.update(extras)
        return out

    return structure, unstructure


def _is_tuple_type(tp: Any) -> bool:
    return tp is tuple or get_origin(tp) is tuple


def _configure() -> None:
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(Path, _structure_path)
    converter.register_structure_hook_func(_is_literal, _structure_literal)
    converter.register_structure_hook_factory(_is_homogeneous_tuple, _tuple_hook_factory)
    converter.register_structure_hook_factory(is_mapping, _mapping_hook_factory)
    converter.register_structure_hook_factory(attrs.has, _attrs_hook_factory)
    converter.register_unstructure_hook(Path, str)
    converter.register_unstructure_hook_func(
        _is_tuple_type,
        lambda value: [converter.unstructure(item) for item in value],
    )
    ppo_structure, ppo_unstructure = _make_ppo_hooks()
    converter.register_structure_hook(PPOTrainingResult, ppo_structure)
    converter.register_unstructure_hook(PPOTrainingResult, ppo_unstructure)


_configure()


def to_dict(record: Any) -> dict[str, Any]:
    """Return ``record`` as a JSON-ready dict: declaration order, None values kept.

    Raises ``TypeError`` when ``record`` is not an attrs record.
    """
    out = converter.unstructure(record)
    if not isinstance(out, dict):
        raise TypeError(f"to_dict expects an attrs record, got {type(record).__name__}")
    return out


def from_dict(
    cls: type[T],
    data: Any,
    *,
    error: type[TownletInputError] = DTOValidationError,
    context: str | None = None,
) -> T:
    """Build a ``cls`` record from ``data`` (the inverse of :func:`to_dict`).

    Raises ``error`` (``DTOValidationError`` by default) whose message starts with ``context``
    (default: the class name) and lists every problem as ``key.path: what is wrong``.
    """
    try:
        return converter.structure(data, cls)
    except (BaseValidationError, TownletInputError, TypeError, ValueError, AttributeError) as exc:
        problems = describe_error(exc)
        raise error(f"{context or cls.__name__}: {'; '.join(problems)}") from exc


def to_json(record: Any, **dumps_kwargs: Any) -> str:
    """``json.dumps(to_dict(record))``; keyword arguments go to :func:`json.dumps`."""
    return json.dumps(to_dict(record), **dumps_kwargs)


def from_json(cls: type[T], text: str | bytes) -> T:
    """Parse JSON text and build a ``cls`` record (errors as in :func:`from_dict`)."""
    data = loads_json(text, DTOValidationError, cls.__name__, syntax=": invalid JSON")
    return from_dict(cls, data)


def _join(path: str, name: object) -> str:
    return f"{path}.{name}" if path else str(name)


def _suggestion(key: str, cls: type) -> str:
    names = [f.name for f in attrs.fields(cls)] if attrs.has(cls) else []
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key (valid keys: {', '.join(names)})"


def describe_error(exc: BaseException, path: str = "") -> list[str]:
    """Flatten a (nested) structuring error into ``key.path: problem`` lines."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return [
            f"{_join(path, key)}: {_suggestion(key, exc.cl)}" for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, ClassValidationError | IterableValidationError):
        lines: list[str] = []
        with_notes, without_notes = exc.group_exceptions()
        for sub, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                lines += describe_error(sub, _join(path, note.name))
            elif isinstance(note, IterableValidationNote):
                lines += describe_error(sub, f"{path}[{note.index!r}]")
            else:
                lines += describe_error(sub, path)
        for sub in without_notes:
            lines += describe_error(sub, path)
        return lines
    if isinstance(exc, FieldValueError):
        return [f"{_join(path, exc.field)}: {exc.detail}"]
    if isinstance(exc, KeyError):
        return [f"{path or exc.args[0]}: missing required key"]
    return [f"{path}: {exc}" if path else str(exc)]
