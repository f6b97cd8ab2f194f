"""Seeded random streams derived from a run seed and counters.

A step that needs randomness (a minibatch permutation, a shuffle) derives a fresh generator from
``(seed, counter, ...)`` instead of carrying mutable generator state: the state record then holds
only integers, a checkpoint is just those integers, and resuming replays the same streams.
"""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(seed: int, *counters: int) -> int:
    """A 63-bit seed mixed from ``seed`` and ``counters`` by numpy's ``SeedSequence``.

    Different counter tuples give statistically independent streams; the same tuple always gives
    the same seed. All values must be non-negative ints.
    """
    # The length word keeps (s,) and (s, 0) apart: SeedSequence ignores trailing zero words.
    entropy = [seed, len(counters), *counters]
    words = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def derive_generator(
    seed: int, *counters: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A new ``torch.Generator`` on ``device`` seeded by :func:`derive_seed` (no global RNG)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *counters))
    return generator
