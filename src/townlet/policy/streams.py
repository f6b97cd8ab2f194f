"""Every random stream of a run, named once: the :class:`Stream` enum and one derivation.

A step that needs randomness derives it from the run seed, its stream and counters
(``stream_seed(seed, Stream.PPO_PERMUTATION, epoch, batch)``), never from global state, so a
state record of integers is a complete resume point.

Each stream has an integer *tag* and a *layout* of the words fed to numpy's ``SeedSequence``:

* ``HEAD`` (torch generators): ``[seed, 1 + len(counters), tag, *counters]`` → a 63-bit seed;
* ``TAIL`` (anneal stage seeds, numpy generators): ``[seed, *counters, tag]`` → a 31-bit seed,
  or the numpy ``Generator`` of those words.

The tags and layouts are those the code used before the streams had names, so every derived value
is unchanged. Two tags are shared between layouts (11 and 12: the online permutation/action
streams and the anneal stage capture/BC seeds); they cannot collide, because a ``HEAD`` sequence
has a length word and at least one counter more than the ``TAIL`` sequence of the same tag.
Torch-free.
"""

from __future__ import annotations

import enum

import numpy as np


class Layout(enum.Enum):
    """Where the tag goes among the words (see the module docstring)."""

    HEAD = "head"
    TAIL = "tail"


class Stream(enum.Enum):
    """The random streams; the value is ``(tag, layout)``. Counters per stream in brackets."""

    PPO_PERMUTATION = (1, Layout.HEAD)  # replay minibatch permutation [epoch, batch]
    BC_SHUFFLE = (2, Layout.HEAD)  # BC minibatch shuffle [epoch]
    BC_SPLIT = (3, Layout.HEAD)  # BC train/validation split []
    PPO_DEMOS = (4, Layout.HEAD)  # demonstration rows beside replay minibatches [epoch, batch]
    ONLINE_PERMUTATION = (11, Layout.HEAD)  # online minibatch permutation [update, pass]
    ONLINE_ACTIONS = (12, Layout.HEAD)  # online action sampling [update]
    STAGE_CAPTURE = (11, Layout.TAIL)  # anneal stage rollout capture seed [stage]
    STAGE_BC = (12, Layout.TAIL)  # anneal stage BC run seed [stage]
    CAPTURE_POLICY = (3, Layout.TAIL)  # capture policy's numpy generator []
    EVAL_POLICY = (5, Layout.TAIL)  # evaluation policy's numpy generator [episode or batch]

    @property
    def tag(self) -> int:
        """The stream's integer tag."""
        tag: int = self.value[0]
        return tag

    @property
    def layout(self) -> Layout:
        """Where the tag goes among the words."""
        layout: Layout = self.value[1]
        return layout


def stream_words(seed: int, stream: Stream, *counters: int) -> list[int]:
    """The ``SeedSequence`` entropy words of ``stream`` at ``counters`` for run ``seed`` — the
    one derivation every random draw of a run goes through. All values must be ints >= 0."""
    if stream.layout is Layout.HEAD:
        # The length word keeps (s,) and (s, 0) apart: SeedSequence ignores trailing zero words.
        return [seed, 1 + len(counters), stream.tag, *counters]
    return [seed, *counters, stream.tag]


def stream_seed(seed: int, stream: Stream, *counters: int) -> int:
    """An integer seed for ``stream`` at ``counters``: 63 bits for ``HEAD`` streams (torch
    generators), 31 bits for ``TAIL`` streams (seeds handed to other runs)."""
    words = stream_words(seed, stream, *counters)
    if stream.layout is Layout.TAIL:
        return int(np.random.SeedSequence(words).generate_state(1)[0] >> 1)
    return seed_from_words(words)


def seed_from_words(words: list[int]) -> int:
    """The 63-bit seed numpy's ``SeedSequence`` mixes from ``words`` (HEAD layout)."""
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def stream_rng(seed: int, stream: Stream, *counters: int) -> np.random.Generator:
    """A numpy ``Generator`` for ``stream`` at ``counters``."""
    return np.random.default_rng(stream_words(seed, stream, *counters))
