"""Field validators and converters shared by the config records and the result records.

attrs' own validators word their errors as ``'x' must be >= 0: -1``; ours name the field, the
value and the allowed range in plain words, and raise the project's error types:
:class:`ConfigFieldError` for config records (``clip_param: 1.5 is not in [0, 1]``) and
:class:`DTOFieldError` for result records (``PPOTrainingResult.clip_fraction: 1.5 must be less
than or equal to 1``, the reference's wording). Both carry ``field`` and ``detail`` so that the
converter can prefix the key path of a nested record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import attrs

from townlet._input_limits import short_repr
from townlet.errors import ConfigError, DTOValidationError

if TYPE_CHECKING:
    AttrsField = attrs.Attribute[Any]
else:  # attrs.Attribute is not subscriptable at run time (typeguard evaluates annotations)
    AttrsField = attrs.Attribute


class FieldValueError(ValueError):
    """A value rejected by a field validator: ``field`` names it, ``detail`` says why."""

    field: str
    detail: str


class ConfigFieldError(FieldValueError, ConfigError):
    """A config record field is out of range or of the wrong type."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class DTOFieldError(FieldValueError, DTOValidationError):
    """A result record field is out of range or of the wrong type."""

    def __init__(self, record: str, field: str, detail: str) -> None:
        super().__init__(f"{record}.{field}: {detail}")
        self.record = record
        self.field = field
        self.detail = detail


ErrorFactory = Callable[[object, str, str], FieldValueError]


def check_int_arg(name: str, value: object, low: int) -> int:
    """``value`` if it is an int (not a bool) ``>= low``; otherwise :class:`ConfigError`
    ``"<name> must be an integer >= <low>, got <value!r>"``. For function arguments such as a
    run's ``seed`` or ``epochs``, which are not record fields."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {short_repr(value)}")
    return value


def config_error(instance: object, field: str, detail: str) -> FieldValueError:
    """Error factory for config records."""
    return ConfigFieldError(field, detail)


def dto_error(instance: object, field: str, detail: str) -> FieldValueError:
    """Error factory for result records (names the record class too)."""
    return DTOFieldError(type(instance).__name__, field, detail)


def fmt_number(value: float) -> str:
    """Render a bound as a person writes it: ``0``, ``1``, ``1e-08``, ``100000``."""
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer()):
        return str(int(value))
    return repr(float(value))


def _side_text(op: str, bound: float) -> str:
    words = {
        "ge": "greater than or equal to",
        "gt": "greater than",
        "le": "less than or equal to",
        "lt": "less than",
    }
    return f"must be {words[op]} {fmt_number(bound)}"


@attrs.frozen
class Bounds:
    """attrs validator: ``lower <= value <= upper`` (strict with ``gt``/``lt``); None passes.

    ``style="range"`` words two-sided violations as ``1.5 is not in [0, 1]`` (config files);
    ``style="side"`` names the violated side, ``1.5 must be less than or equal to 1`` (records).
    NaN violates every bound.
    """

    error: ErrorFactory
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    style: str = "side"

    def __call__(self, instance: object, attribute: AttrsField, value: Any) -> None:
        if value is None:
            return
        violated = self._violated(value)
        if violated is None:
            return
        detail = f"{short_repr(value)} {violated}"
        if self.style == "range" and self._two_sided():
            detail = f"{short_repr(value)} is not in {self._interval()}"
        raise self.error(instance, attribute.name, detail)

    def _violated(self, value: float) -> str | None:
        checks: tuple[tuple[str, float | None, bool], ...] = (
            ("ge", self.ge, self.ge is not None and not value >= self.ge),
            ("gt", self.gt, self.gt is not None and not value > self.gt),
            ("le", self.le, self.le is not None and not value <= self.le),
            ("lt", self.lt, self.lt is not None and not value < self.lt),
        )
        for op, bound, failed in checks:
            if failed and bound is not None:
                return _side_text(op, bound)
        return None

    def _two_sided(self) -> bool:
        return (self.ge is not None or self.gt is not None) and (
            self.le is not None or self.lt is not None
        )

    def _interval(self) -> str:
        low = f"[{fmt_number(self.ge)}" if self.ge is not None else f"({fmt_number(self.gt or 0)}"
        high = f"{fmt_number(self.le)}]" if self.le is not None else f"{fmt_number(self.lt or 0)})"
        return f"{low}, {high}"


@attrs.frozen
class OneOf:
    """attrs validator: the value is one of ``options`` (None passes)."""

    error: ErrorFactory
    options: Collection[object]

    def __call__(self, instance: object, attribute: AttrsField, value: Any) -> None:
        if value is None or value in self.options:
            return
        allowed = ", ".join(repr(o) for o in self.options)
        raise self.error(instance, attribute.name, f"{short_repr(value)} is not one of {allowed}")


def _describe(value: object) -> str:
    return f"{short_repr(value)} ({type(value).__name__})"


def number_converter(error: ErrorFactory, *, optional: bool = False) -> Any:
    """attrs converter: int/float → float (an int beyond the float range becomes ±inf); bool,
    str and other types are rejected.

    The converter raises ``error(instance, field, 'expected a number, got ...')``.
    """

    def convert(value: Any, instance: Any, field: AttrsField) -> float | None:
        if value is None and optional:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise error(instance, field.name, f"expected a number, got {_describe(value)}")
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)

    return attrs.Converter(convert, takes_self=True, takes_field=True)


@attrs.frozen
class Finite:
    """attrs validator: the value is a finite number (None passes)."""

    error: ErrorFactory

    def __call__(self, instance: object, attribute: AttrsField, value: Any) -> None:
        if value is None or math.isfinite(value):
            return
        raise self.error(
            instance, attribute.name, f"expected a finite number, got {short_repr(value)}"
        )


_INT64_MAX = 2**63 - 1


def int_converter(error: ErrorFactory, *, optional: bool = False) -> Any:
    """attrs converter: int, or a float with an integral value → int, within int64; others are
    rejected.

    The converter raises ``error(instance, field, 'expected an integer, got ...')``.
    """

    def convert(value: Any, instance: Any, field: AttrsField) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > _INT64_MAX:
                raise error(instance, field.name, f"{short_repr(value)} is out of the int64 range")
            return value
        raise error(instance, field.name, f"expected an integer, got {_describe(value)}")

    return attrs.Converter(convert, takes_self=True, takes_field=True)


@attrs.frozen
class InstanceOf:
    """attrs validator: the value is an instance of ``kind`` (None passes when ``optional``)."""

    error: ErrorFactory
    kind: type | tuple[type, ...]
    expected: str
    optional: bool = False

    def __call__(self, instance: object, attribute: AttrsField, value: Any) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, self.kind) and not (
            isinstance(value, bool) and self.kind is not bool and bool not in _kinds(self.kind)
        ):
            return
        raise self.error(
            instance, attribute.name, f"expected {self.expected}, got {_describe(value)}"
        )


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
