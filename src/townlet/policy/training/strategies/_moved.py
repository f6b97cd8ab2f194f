"""Module ``__getattr__`` factories: the old flat module paths of the strategies, kept as
deprecated re-exports after #11 moved each strategy into its own package (``ppo/``, ``bc/``,
``anneal/``), and the packages' lazy re-exports of their drivers."""

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


def lazy_exports(package: str, driver: str, names: tuple[str, ...]) -> Callable[[str], Any]:
    """A package ``__getattr__`` returning ``names`` from its ``driver`` module on first use,
    so that importing a step module of the package does not import the driver (and through
    it the orchestrator, which imports step modules in turn)."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - a module __getattr__
        if name in names:
            return getattr(importlib.import_module(f"{package}.{driver}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
