"""``python -m townlet`` and ``torchrun -m townlet``: the ``townlet-train`` command line."""

from __future__ import annotations

from townlet.cli import run

if __name__ == "__main__":
    run()
