"""Every ``townlet-train`` command written in the README, the guide and the migration guide parses
with the real CLI.

The commands are parsed, not run, so the check is instant; it catches a renamed subcommand or
flag before a reader does. (The guide's commands were also run by hand, see its introduction.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from townlet.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "docs" / "guide.md", REPO / "docs" / "migration.md"]
_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def _commands(path: Path) -> list[str]:
    commands = []
    for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["townlet-train"] and "--help" not in words:
                commands.append(line)
    return commands


def _all_commands() -> list[tuple[str, str]]:
    return [(path.name, command) for path in DOCS for command in _commands(path)]


def test_the_docs_show_commands() -> None:
    names = {name for name, _ in _all_commands()}
    assert names == {"README.md", "guide.md", "migration.md"}
    assert len(_all_commands()) >= 15


@pytest.mark.parametrize(("doc", "command"), _all_commands())
def test_documented_command_parses(doc: str, command: str) -> None:
    words = shlex.split(command, comments=True)[1:]
    try:
        args = build_parser().parse_args(words)
    except SystemExit as exc:  # argparse reports bad usage by exiting 2
        pytest.fail(f"{doc}: `{command}` does not parse (exit {exc.code})")
    assert callable(args.handler)
