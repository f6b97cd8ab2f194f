"""Running a subcommand under ``torchrun``: join the process group around the handler.

Without ``torchrun``'s variables (or with one process) the handler runs as always, with
``args.collective = LOCAL`` and no ``torch.distributed`` state. With N > 1 processes the
commands that can shard their work (:data:`DISTRIBUTED_COMMANDS`) run inside a process group
whose timeout is ``--dist-timeout``; the others are refused with a usage error.
"""

from __future__ import annotations

import argparse
import os

from townlet.distributed import DEFAULT_TIMEOUT_S, LOCAL, Collective, launch_info

DISTRIBUTED_COMMANDS = frozenset({"capture", "bc", "ppo", "anneal", "demo"})


class DistributedUsageError(Exception):
    """A command that does not shard its work was launched with more than one process."""


def add_launch_options(parser: argparse.ArgumentParser) -> None:
    """The top-level options of a ``torchrun`` launch."""
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for its peers before failing "
        f"(default {DEFAULT_TIMEOUT_S:g})",
    )


def collective(args: argparse.Namespace) -> Collective:
    """The process group ``args`` runs in (:data:`LOCAL` when the handler was called directly)."""
    group = getattr(args, "collective", LOCAL)
    return group if isinstance(group, Collective) else LOCAL


def run_with_group(args: argparse.Namespace) -> int:
    """Run ``args.handler(args)``, inside the launch's process group when there is one."""
    info = launch_info(os.environ)
    if not info.distributed:
        args.collective = LOCAL
        code: int = args.handler(args)
        return code
    if args.command not in DISTRIBUTED_COMMANDS:
        raise DistributedUsageError(
            f"does not run under torchrun with {info.world_size} processes; "
            f"the commands that do: {', '.join(sorted(DISTRIBUTED_COMMANDS))}"
        )
    timeout = getattr(args, "dist_timeout", DEFAULT_TIMEOUT_S)
    if not timeout > 0:
        raise DistributedUsageError(f"--dist-timeout must be > 0 seconds, got {timeout}")
    from townlet.distributed.group import process_group

    with process_group(info, device=_device(args), timeout_s=timeout) as group:
        args.collective = group
        code = args.handler(args)
    return code


def _device(args: argparse.Namespace) -> str:
    device = getattr(args, "device", None)
    return device if isinstance(device, str) else "cpu"
