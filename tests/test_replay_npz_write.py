"""``write_npz``: numpy's npz bytes exactly (stored and deflated), every deflate level readable."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from townlet.policy.replay import NPZ_KEYS
from townlet.policy.replay.npz_write import check_compress_level, write_npz
from townlet.policy.rollout import capture_rollout
from townlet.world import WorldConfig


def _arrays() -> dict[str, NDArray[Any]]:
    sample = capture_rollout(WorldConfig(num_agents=2), "scripted", 30, seed=1).samples[1]
    return {key: getattr(sample, key) for key in NPZ_KEYS}


def _odd_arrays() -> dict[str, NDArray[Any]]:
    rng = np.random.default_rng(0)
    return {
        "fortran": np.asfortranarray(rng.normal(size=(5, 7))),
        "strided": np.arange(40, dtype=np.int64)[::3],
        "empty": np.zeros((4, 0, 0, 0), np.float32),
        "flags": rng.random(9) > 0.5,
        "scalar": np.float32(2.5) * np.ones((), np.float32),
        "big_endian": np.arange(6, dtype=">i4"),
    }


def _numpy_bytes(arrays: dict[str, NDArray[Any]], compress: bool) -> bytes:
    handle = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(handle, **arrays)  # type: ignore[operator]
    return handle.getvalue()


def _ours(arrays: dict[str, NDArray[Any]], level: int | None) -> bytes:
    handle = io.BytesIO()
    write_npz(handle, arrays, level=level)
    return handle.getvalue()


@pytest.mark.parametrize("make", [_arrays, _odd_arrays], ids=["sample", "odd"])
def test_bytes_equal_numpy(make: Any) -> None:
    arrays = make()
    assert _ours(arrays, 6) == _numpy_bytes(arrays, compress=True)
    assert _ours(arrays, None) == _numpy_bytes(arrays, compress=False)


def test_every_level_reads_back_and_level_changes_size() -> None:
    arrays = _arrays()
    sizes = {}
    for level in range(10):
        data = _ours(arrays, level)
        sizes[level] = len(data)
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            assert list(archive.files) == list(NPZ_KEYS)
            for key in NPZ_KEYS:
                assert archive[key].dtype == arrays[key].dtype
                assert archive[key].tobytes() == np.ascontiguousarray(arrays[key]).tobytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    assert sizes[0] > sizes[1] > sizes[9]


@pytest.mark.parametrize("level", [-1, 10, 1.0, True, "3"])
def test_bad_level(level: Any) -> None:
    with pytest.raises(
        ValueError, match=f"compress_level must be an int from 0 to 9, got {level!r}"
    ):
        check_compress_level(level)


def test_object_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="object arrays"):
        write_npz(io.BytesIO(), {"x": np.array([{}], dtype=object)}, level=1)
