"""Seeded random streams derived from a run seed and counters.

A step that needs randomness (a minibatch permutation, a shuffle) derives a fresh generator from
``(seed, counter, ...)`` instead of carrying mutable generator state: the state record then holds
only integers, a checkpoint is just those integers, and resuming replays the same streams.
"""

from __future__ import annotations

import torch

from townlet.policy.streams import Stream, seed_from_words, stream_seed


def derive_seed(seed: int, *counters: int) -> int:
    """A 63-bit seed mixed from ``seed`` and ``counters`` by numpy's ``SeedSequence``.

    Different counter tuples give statistically independent streams; the same tuple always gives
    the same seed. All values must be non-negative ints.
    """
    # The length word keeps (s,) and (s, 0) apart: SeedSequence ignores trailing zero words.
    return seed_from_words([seed, len(counters), *counters])


def derive_generator(
    seed: int, *counters: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A new ``torch.Generator`` on ``device`` seeded by :func:`derive_seed` (no global RNG)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *counters))
    return generator


def stream_generator(
    seed: int, stream: Stream, *counters: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A new ``torch.Generator`` on ``device`` for ``stream`` at ``counters``
    (:func:`~townlet.policy.streams.stream_seed`)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(stream_seed(seed, stream, *counters))
    return generator
