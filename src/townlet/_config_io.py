"""Reading config files into plain mappings (TOML via tomllib, YAML via PyYAML's safe loader)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from townlet._input_limits import MAX_NESTING_DEPTH, check_structure, one_line, read_text
from townlet.errors import ConfigError


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``; people write both)."""


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

_FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}


def _yaml_problem(exc: Exception) -> str:
    """The parser's complaint on one line, without the echoed source (PyYAML's marks quote the
    input, which may be huge): context, problem, and line/column."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else None
        parts = [exc.context, exc.problem, where]
        return one_line(", ".join(str(p) for p in parts if p), limit=300)
    return one_line(str(exc), limit=300)


def parse_config_file(path: Path) -> dict[str, Any]:
    """Return the top-level mapping of a TOML or YAML file; :class:`ConfigError` otherwise."""
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"{path}: unsupported config format {path.suffix!r} (expected .toml, .yaml or .yml)"
        )
    text = read_text(path, ConfigError, f"{path}: config file")
    try:
        data = tomllib.loads(text) if kind == "toml" else yaml.load(text, Loader=_SafeLoader)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: invalid {kind.upper()}: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested deeper than {MAX_NESTING_DEPTH} levels") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: invalid {kind.upper()}: {one_line(str(exc))}") from None
    check_structure(data, ConfigError, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data
