"""Execute a notebook top to bottom in a scratch directory and store its outputs in place.

    .venv/bin/python tools/run_notebook.py docs/notebooks/quickstart.ipynb

The notebook's files (``runs/...``) go to a temporary directory that is removed afterwards; the
executed notebook replaces the original atomically, so a failing cell leaves it untouched.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from townlet._atomic import write_text_atomic


def execute(path: Path, timeout: int) -> float:
    """Run every cell of ``path`` and write the outputs back; return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": scratch}},
        )
        client.execute()
    elapsed = time.perf_counter() - start
    write_text_atomic(path, nbformat.writes(notebook) + "\n")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell (300)")
    args = parser.parse_args()
    try:
        elapsed = execute(args.notebook, args.timeout)
    except CellExecutionError as exc:
        sys.stderr.write(f"{args.notebook}: a cell failed:\n{exc}\n")
        return 1
    print(f"{args.notebook}: executed in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
