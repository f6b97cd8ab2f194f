"""Rivalry slots: hand-computed add/decay/lookup."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.world.rivalry import add_rivalry, decay_rivalry, rivalry_between, strongest_rival


def _slots() -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([[1, -1], [-1, -1], [0, 1]], dtype=np.int64)
    vals = np.array([[0.5, 0.0], [0.0, 0.0], [0.2, 0.6]], dtype=np.float32)
    return ids, vals


def test_add_updates_existing_and_fills_weakest_slot() -> None:
    ids, vals = _slots()
    new_ids, new_vals = add_rivalry(
        ids, vals, np.array([0, 0, 2, 2]), np.array([1, 2, 1, 1]),
        np.array([0.25, 0.3, 0.5, 0.1], dtype=np.float32),
    )  # fmt: skip
    assert new_ids.tolist() == [[1, 2], [-1, -1], [0, 1]]
    np.testing.assert_allclose(new_vals, [[0.75, 0.3], [0, 0], [0.2, 1.0]], atol=1e-6)
    assert ids.tolist() == _slots()[0].tolist()  # inputs untouched


def test_full_row_replaces_its_weakest_tie_and_negative_only_touches_known() -> None:
    ids, vals = _slots()
    new_ids, new_vals = add_rivalry(
        ids, vals, np.array([2, 1]), np.array([4, 3]), np.array([0.3, -0.2], dtype=np.float32)
    )
    assert new_ids[2].tolist() == [4, 1] and new_vals[2, 0] == pytest.approx(0.3)
    assert new_ids[1].tolist() == [-1, -1]


def test_decay_forgets_weak_ties_and_lookup() -> None:
    ids, vals = _slots()
    _d_ids, d_vals = decay_rivalry(ids, vals, 0.5)
    np.testing.assert_allclose(d_vals, [[0.25, 0], [0, 0], [0.1, 0.3]], atol=1e-7)
    f_ids, _ = decay_rivalry(ids, np.full_like(vals, 0.015), 0.5)
    assert (f_ids == -1).all()
    rival, value = strongest_rival(ids, vals)
    assert rival.tolist() == [1, -1, 1] and value.tolist() == pytest.approx([0.5, 0.0, 0.6])
    got = rivalry_between(ids, vals, np.array([0, 2, 1]), np.array([1, 0, 0]))
    assert got.tolist() == pytest.approx([0.5, 0.2, 0.0])
