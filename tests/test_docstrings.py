"""Every module, public function, public class and public method under src/townlet has a docstring.

Read from the source with ``ast`` (nothing is imported, so torch-only modules are checked even
without torch). "Public" means the name does not start with ``_``; private modules are checked
too, since their functions are shared across the package. Names exported from ``townlet`` must
resolve to a documented top-level definition in the module ``_EXPORTS`` names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import townlet

SRC = Path(townlet.__file__).resolve().parent

# (module path relative to src/townlet, qualified name) pairs allowed to lack a docstring.
# Keep this empty unless a name cannot carry one (say why next to it).
EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _public_definitions(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, Definition]]:
    for node in body:
        if not isinstance(node, Definition) or node.name.startswith("_"):
            continue
        yield prefix + node.name, node
        if isinstance(node, ast.ClassDef):
            yield from _public_definitions(node.body, f"{prefix}{node.name}.")


def _missing() -> list[str]:
    out = []
    for path in _modules():
        rel = path.relative_to(SRC).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not ast.get_docstring(tree):
            out.append(f"{rel}: module docstring")
        for name, node in _public_definitions(tree.body):
            if not ast.get_docstring(node) and (rel, name) not in EXCEPTIONS:
                out.append(f"{rel}:{node.lineno}: {name}")
    return out


def test_public_definitions_have_docstrings() -> None:
    missing = _missing()
    assert not missing, "missing docstrings (what, units, errors raised):\n" + "\n".join(missing)


def _top_level(module: str) -> dict[str, ast.stmt]:
    path = SRC.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = SRC.parent / module.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, Definition):
            found[node.name] = node
        elif (  # an alias such as ``step_world = step`` is documented by its target
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Name)
            and node.value.id in found
        ):
            found[node.targets[0].id] = found[node.value.id]
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                found[alias.asname or alias.name] = node
    return found


def test_exported_names_are_documented_definitions() -> None:
    problems = []
    for name, module in sorted(townlet._EXPORTS.items()):
        node = _top_level(module).get(name)
        if node is None:
            problems.append(f"{name}: not defined in {module}")
        elif isinstance(node, Definition) and not ast.get_docstring(node):
            problems.append(f"{name} ({module}): no docstring")
        # A re-export (``from x import name``) is documented where it is defined, which the
        # walk above checks.
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_missing_docstring(tmp_path: Path) -> None:
    tree = ast.parse("def f():\n    return 1\nclass C:\n    def m(self):\n        pass\n")
    names = [name for name, node in _public_definitions(tree.body) if not ast.get_docstring(node)]
    assert names == ["f", "C", "C.m"]
