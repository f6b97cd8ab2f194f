"""Shared by the benchmark tools: replace one ``## <heading>`` section of docs/benchmarks.md."""

from __future__ import annotations

import re
from pathlib import Path

from townlet._atomic import write_text_atomic


def replace_section(path: Path, heading: str, section: str) -> None:
    """Replace the ``## heading`` section of ``path`` with ``section`` (or append it)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    body = section.rstrip("\n") + "\n"
    if pattern.search(text):
        # A section followed by another keeps one blank line before the next heading.
        text = pattern.sub(lambda m: body + ("\n" if m.end() < len(text) else ""), text)
    else:
        text = text.rstrip() + "\n\n" + section
    write_text_atomic(path, text)
