"""Pairwise rivalry kept in a few slots per agent.

A dense N×N matrix would cost 4M entries at 2048 agents and a full pass every tick to decay it.
Each agent instead remembers its ``K`` strongest rivals (``ids`` (N,K), -1 for an empty slot, and
``vals`` (N,K) in [0,1]) — like the reference's bounded relationship ledger — so decay, lookup and
``rivalry_max`` cost O(N·K) per tick whatever the population. A new rival takes the weakest slot.
"""

from __future__ import annotations

import numpy as np

from townlet.world.state import FloatArray, IntArray

FORGET_BELOW = 0.01  # a tie this weak is forgotten, freeing its slot


def rivalry_between(ids: IntArray, vals: FloatArray, a: IntArray, b: IntArray) -> FloatArray:
    """Rivalry agent ``a[i]`` feels towards ``b[i]`` (0 when ``b[i]`` is not in a's slots)."""
    match = ids[a] == b[:, None]
    return np.asarray((vals[a] * match).sum(axis=1), dtype=np.float32)


def strongest_rival(ids: IntArray, vals: FloatArray) -> tuple[IntArray, FloatArray]:
    """Per agent, the id of its strongest rival (-1 for none) and that rivalry (``rivalry_max``)."""
    slot = np.argmax(vals, axis=1)
    rows = np.arange(ids.shape[0])
    return ids[rows, slot], vals[rows, slot]


def decay_rivalry(ids: IntArray, vals: FloatArray, rate: float) -> tuple[IntArray, FloatArray]:
    """Every tie shrinks by the factor ``1 - rate``; ties below ``FORGET_BELOW`` are dropped."""
    new_vals = vals * np.float32(1.0 - rate)
    keep = new_vals >= FORGET_BELOW
    return np.where(keep, ids, -1), np.where(keep, new_vals, np.float32(0.0))


def _insert_new(ids: IntArray, vals: FloatArray, a: IntArray, b: IntArray, inc: FloatArray) -> None:
    """Write new (a→b) ties into a's weakest slots, in place on the caller's fresh copies."""
    pair = a * (ids.shape[0] + 1) + b
    uniq, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
    total = np.zeros(uniq.size, dtype=np.float32)
    np.add.at(total, inverse, inc)
    a, b = a[first], b[first]  # np.unique sorts by pair, hence by a: groups are contiguous
    group_start = np.searchsorted(a, a, side="left")
    rank = np.arange(a.size) - group_start
    fits = rank < ids.shape[1]
    order = np.argsort(vals[a], axis=1, kind="stable")
    slot = order[np.arange(a.size), np.minimum(rank, ids.shape[1] - 1)]
    ids[a[fits], slot[fits]] = b[fits]
    vals[a[fits], slot[fits]] = np.minimum(total[fits], np.float32(1.0))


def add_rivalry(
    ids: IntArray, vals: FloatArray, a: IntArray, b: IntArray, inc: FloatArray
) -> tuple[IntArray, FloatArray]:
    """Return new slot arrays with ``inc[i]`` added to the rivalry of ``a[i]`` towards ``b[i]``.

    Values stay in [0, 1]. A negative change only touches an existing tie; a positive change for
    an unknown rival takes the weakest slot. Duplicate pairs accumulate. Inputs are not modified.
    """
    ids, vals = ids.copy(), vals.copy()
    if a.size == 0:
        return ids, vals
    match = ids[a] == b[:, None]
    has = match.any(axis=1)
    if has.any():
        np.add.at(vals, (a[has], np.argmax(match[has], axis=1)), inc[has].astype(np.float32))
    new = ~has & (inc > 0)
    if new.any():
        _insert_new(ids, vals, a[new], b[new], inc[new].astype(np.float32))
    np.clip(vals, 0.0, 1.0, out=vals)
    # Forget ties below FORGET_BELOW (id -1, value +0.0) by arithmetic on the whole arrays:
    # at a few thousand agents this is several times cheaper than two masked assignments.
    keep = ~(vals < FORGET_BELOW)
    ids += 1
    ids *= keep
    ids -= 1
    vals *= keep
    vals += np.float32(0.0)  # -0.0 * False is -0.0; -0.0 + 0.0 is +0.0
    return ids, vals
