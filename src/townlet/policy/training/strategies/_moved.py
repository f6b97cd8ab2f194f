"""Old module paths of the strategies, kept as deprecated re-exports after #11 moved each
strategy into its own package (``ppo/``, ``bc/``, ``anneal/``)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved_module(old: str, new: tuple[str, ...]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old`` that warns once per name and returns the name from
    the first module of ``new`` that has it. Importing the old module stays cheap (and
    torch-free): the new modules are imported on first access."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - a module __getattr__
        if name.startswith("__"):
            raise AttributeError(name)
        for target in new:
            module = importlib.import_module(target)
            if hasattr(module, name):
                warnings.warn(
                    f"{old}.{name} is deprecated: import it from {target}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__
