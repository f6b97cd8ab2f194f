"""Count the code lines of the strategy modules, as ADR-004 reports them.

A *code line* is a line that holds a token other than a comment, a docstring or a blank:
docstrings and comments are documentation, not the size of the logic. Usage::

    python tools/module_sizes.py            # every module under policy/training
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "townlet" / "policy" / "training"


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        value = first.value if isinstance(first, ast.Expr) else None
        if first is not None and isinstance(value, ast.Constant) and isinstance(value.value, str):
            lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def code_lines(path: Path) -> int:
    """The number of code lines of ``path`` (see the module docstring)."""
    text = path.read_text(encoding="utf-8")
    docs = _docstring_lines(ast.parse(text))
    lines: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in skip or token.type == tokenize.ENDMARKER:
            continue
        for line in range(token.start[0], token.end[0] + 1):
            if line not in docs:
                lines.add(line)
    return len(lines)


def main() -> int:
    for path in sorted(ROOT.rglob("*.py")):
        total = len(path.read_text(encoding="utf-8").splitlines())
        print(f"{code_lines(path):5d} code {total:5d} total  {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
