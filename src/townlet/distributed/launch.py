"""Where this process sits in a ``torchrun`` launch, and what that makes it own.

``torchrun`` tells each process its place through environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`launch_info` reads
them from a mapping the caller passes (the CLI passes ``os.environ``; nothing in the core reads
the environment). Seeds and shards are pure functions of ``(seed, rank, world_size)`` so that
rank 0 of a one-process launch is exactly the run without ``torchrun``.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np

from townlet.errors import ConfigError

DEFAULT_TIMEOUT_S = 60.0
"""Process-group timeout: a collective that waits this long for a peer fails (a dead or hung
rank ends the others instead of hanging them)."""

RANK_SEED_STREAM = 11
"""Tag of the rank-seed stream in ``SeedSequence([seed, RANK_SEED_STREAM, rank])``."""


@attrs.frozen(kw_only=True)
class LaunchInfo:
    """This process's ``rank`` among ``world_size`` processes (``local_rank`` on its node).

    ``LaunchInfo()`` is the single process: rank 0 of 1.
    """

    rank: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    world_size: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    local_rank: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def __attrs_post_init__(self) -> None:
        if self.rank >= self.world_size:
            raise ConfigError(f"RANK must be below WORLD_SIZE={self.world_size}, got {self.rank}")

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def _int_variable(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(
            f"environment variable {name} must be an int (set by torchrun), got {text!r}"
        ) from None
    if value < 0:
        raise ConfigError(f"environment variable {name} must be >= 0, got {value}")
    return value


def launch_info(environ: Mapping[str, str]) -> LaunchInfo:
    """The :class:`LaunchInfo` that ``torchrun``'s variables in ``environ`` describe; rank 0 of
    1 when they are absent. Raises :class:`~townlet.errors.ConfigError` naming the variable when
    one is not a non-negative int or ``RANK >= WORLD_SIZE``."""
    rank = _int_variable(environ, "RANK", 0)
    world = _int_variable(environ, "WORLD_SIZE", 1)
    local = _int_variable(environ, "LOCAL_RANK", 0)
    if world < 1:
        raise ConfigError(f"environment variable WORLD_SIZE must be >= 1, got {world}")
    return LaunchInfo(rank=rank, world_size=world, local_rank=local)


def rank_seed(seed: int, rank: int) -> int:
    """The seed rank ``rank`` uses where ranks must differ (its environments, its data order).

    Rank 0 uses ``seed`` itself, so a one-process run is the run without ``torchrun``; rank
    ``r > 0`` uses a 31-bit seed mixed from ``(seed, RANK_SEED_STREAM, r)`` by numpy's
    ``SeedSequence`` (independent streams, the same on every machine).
    """
    if rank < 0 or seed < 0:
        raise ValueError(f"rank_seed needs seed >= 0 and rank >= 0, got seed={seed}, rank={rank}")
    if rank == 0:
        return seed
    words = np.random.SeedSequence([seed, RANK_SEED_STREAM, rank]).generate_state(1, np.uint32)
    return int(words[0]) >> 1


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous share of ``n`` items.

    Shares differ by at most one item, the first ``n % world_size`` ranks taking the larger
    (as ``numpy.array_split`` and ``torch.tensor_split``); a rank may get none when
    ``n < world_size``. Raises ``ValueError`` for ``n < 0`` or a rank outside the world.
    """
    if n < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard_bounds needs n >= 0 and 0 <= rank < world_size, got {n=}, {rank=}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@attrs.frozen(kw_only=True)
class Collective:
    """This process's ``rank`` among ``world_size`` in a started process group of ``backend``
    (``"gloo"`` or ``"nccl"``); ``backend`` is None for the single process (:data:`LOCAL`).

    Handed explicitly to whatever needs to know its shard or to talk to its peers; the
    collectives on it are in :mod:`townlet.distributed.group`.
    """

    rank: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    world_size: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    backend: str | None = None

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that writes files."""
        return self.rank == 0


LOCAL = Collective()
"""The single process: no process group, every collective the identity."""
