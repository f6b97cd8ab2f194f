"""docs/architecture.md's module layout and torch list match the source tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import townlet

SRC = Path(townlet.__file__).resolve().parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _layout() -> dict[str, bool]:
    """Module path (relative to src/townlet) → marked ``[torch]`` in the doc's layout block."""
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"## Layout of `src/townlet/`.*?```\ntownlet/\n(.*?)```", text, re.S)
    assert block is not None, "docs/architecture.md has no layout block"
    out = {}
    for line in block.group(1).splitlines():
        fields = line.split()
        if fields and fields[0].endswith(".py"):
            out[fields[0]] = line.rstrip().endswith("[torch]")
    return out


def _imports_torch(path: Path) -> bool:
    # Top-level imports only: a function-level import is how a module stays torch-free.
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        if any(name == "torch" or name.startswith("torch.") for name in names):
            return True
    return False


def test_layout_lists_every_module_and_marks_torch() -> None:
    actual = {path.relative_to(SRC).as_posix(): _imports_torch(path) for path in SRC.rglob("*.py")}
    documented = _layout()
    assert sorted(documented) == sorted(actual), "update the layout in docs/architecture.md"
    wrong = sorted(name for name, torch in actual.items() if documented[name] != torch)
    assert not wrong, f"[torch] marks disagree with the imports for: {wrong}"


def test_torch_paragraph_names_the_torch_modules() -> None:
    text = DOC.read_text(encoding="utf-8")
    paragraph = text.split("## Where torch lives", 1)[1].split("Everything else", 1)[0]
    for path in SRC.rglob("*.py"):
        if _imports_torch(path):
            assert f"`{path.stem}`" in paragraph or f".{path.stem}`" in paragraph, path.stem
