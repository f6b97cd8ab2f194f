"""Drop-in for the reference's ``scripts/validate_ppo_telemetry.py``.

``python tools/validate_ppo_telemetry.py LOG... [--baseline F] [--drift-threshold X] [--relative]``
runs ``townlet-train telemetry validate --format human`` with the same arguments.
"""

from __future__ import annotations

import sys

from townlet.cli import main

if __name__ == "__main__":
    sys.exit(main(["telemetry", "validate", "--format", "human", *sys.argv[1:]]))
