"""Reading and writing replay samples: ``.npz`` arrays plus a ``.json`` sidecar.

Arrays are always read with ``allow_pickle=False``; an object array is refused, never
unpickled. Every failure is a :class:`ReplayDataError` whose message names the file and the
field. Writes are atomic (a temporary file in the target directory, then ``os.replace``).
"""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _ascii_json
from pathlib import Path
from typing import IO, Any

import attrs
import numpy as np
from numpy.typing import NDArray

from townlet._atomic import atomic_write
from townlet._input_limits import (
    check_allocation,
    loads_json,
    one_line,
    open_regular,
    read_text,
    show_path,
)
from townlet.errors import ReplayDataError, ShortFeatureNamesWarning
from townlet.policy.replay.sample import (
    NPZ_KEYS,
    REQUIRED_CONFLICT_FEATURES,
    TRAINING_ARRAY_FIELDS,
    ReplaySample,
    Shape,
    Signature,
    check_array_shapes,
    check_dtype,
    check_metadata,
    normalized_shape,
    short_feature_names,
    signature_of,
)

# What numpy, zipfile and zlib raise for a damaged archive (a bad zip directory, a corrupt
# deflate stream, an npy header that does not parse, an unsupported compression method).
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    KeyError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    MemoryError,
    SyntaxError,
    TypeError,
    IndexError,
    struct.error,
)


def default_meta_path(sample_path: str | os.PathLike[str]) -> Path:
    """The sidecar next to ``sample_path``: same stem, ``.json`` suffix."""
    return Path(sample_path).with_suffix(".json")


def read_sidecar(
    meta_path: str | os.PathLike[str],
    *,
    require_conflict_features: bool = True,
    required: bool = True,
) -> dict[str, Any]:
    """Read a sample's json sidecar and check its ``feature_names``.

    A missing file raises unless ``required`` is false (then ``{}``). With
    ``require_conflict_features`` the sidecar must hold a ``feature_names`` list containing
    ``rivalry_max`` and ``rivalry_avoid_count`` (as the reference required).
    Raises :class:`ReplayDataError` naming the file and the key.
    """
    path = Path(meta_path)
    if not path.exists():  # a FIFO or device exists: read_text refuses it by name
        if required:
            raise ReplayDataError(f"Replay sample sidecar {path} not found")
        payload: dict[str, Any] = {}
    else:
        payload = _read_json_object(path)
    if not require_conflict_features:
        return payload
    names = payload.get("feature_names")
    if not isinstance(names, list):
        raise ReplayDataError(f"Replay sample sidecar {path} missing feature_names list")
    missing = [name for name in REQUIRED_CONFLICT_FEATURES if name not in names]
    if missing:
        raise ReplayDataError(
            f"Replay sample sidecar {path} feature_names missing conflict feature(s): {missing}"
        )
    return payload


def _read_json_object(path: Path) -> dict[str, Any]:
    where = f"Replay sample sidecar {path}"
    text = read_text(path, ReplayDataError, where)
    payload = loads_json(text, ReplayDataError, where)
    if not isinstance(payload, dict):
        raise ReplayDataError(f"{where} must hold a JSON object, got {type(payload).__name__}")
    return payload


def _check_members(path: Path, members: list[str]) -> None:
    if "features" not in members:
        raise ReplayDataError(f"Replay sample {path} missing required arrays: ['features']")
    missing = [field for field in TRAINING_ARRAY_FIELDS if field not in members]
    if missing:
        raise ReplayDataError(f"Replay sample {path} missing training array(s): {missing}")


def _read_arrays(path: Path) -> dict[str, NDArray[Any]]:
    fd = open_regular(path, ReplayDataError, f"Replay sample {show_path(path)}")
    key = "(archive)"
    with os.fdopen(fd, "rb") as handle:
        try:
            _check_declared_size(path, handle)
            handle.seek(0)
            loaded = np.load(handle, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ReplayDataError(f"Replay sample {path} is an .npy array, not an npz archive")
            with loaded as archive:
                members = list(archive.files)
                _check_members(path, members)
                arrays: dict[str, NDArray[Any]] = {}
                for key in NPZ_KEYS:
                    if key in members:
                        arrays[key] = archive[key]
        except ReplayDataError:
            raise
        except _READ_ERRORS as exc:
            raise ReplayDataError(_unreadable(path, key, exc)) from None
    return arrays


def _unreadable(path: Path, key: str, exc: BaseException) -> str:
    detail = one_line(f"{type(exc).__name__}: {exc}", limit=200)
    return f"Replay sample {path} array {key!r} unreadable: {detail}"


def _check_declared_size(path: Path, handle: IO[bytes]) -> None:
    """Refuse an archive whose npy headers declare more bytes than the memory available
    (read from the headers, before any array is decompressed)."""
    if handle.read(6) == b"\x93NUMPY":
        raise ReplayDataError(f"Replay sample {path} is an .npy array, not an npz archive")
    handle.seek(0)
    total = 0
    with zipfile.ZipFile(handle) as archive:
        names = set(archive.namelist())
        for key in NPZ_KEYS:
            if f"{key}.npy" in names:
                shape, dtype = _member_header(archive, key)
                nbytes = math.prod(shape) * dtype.itemsize
                stored = archive.getinfo(f"{key}.npy").file_size
                if nbytes > stored:
                    raise ReplayDataError(
                        f"Replay sample {path} array {key!r} declares {nbytes} bytes but its "
                        f"archive member holds {stored} (damaged header?)"
                    )
                total += nbytes
    check_allocation(total, ReplayDataError, f"Replay sample {path}")


def _sample_sidecar(
    path: Path, meta_path: str | os.PathLike[str] | None, require_conflict_features: bool
) -> dict[str, Any]:
    """The sidecar of the sample at ``path``: ``meta_path`` (which must exist) or the sibling
    ``.json`` (which may be absent only when conflict features are not required)."""
    meta = Path(meta_path) if meta_path is not None else default_meta_path(path)
    return read_sidecar(
        meta,
        require_conflict_features=require_conflict_features,
        required=meta_path is not None or require_conflict_features,
    )


def load_replay_sample(
    sample_path: str | os.PathLike[str],
    meta_path: str | os.PathLike[str] | None = None,
    *,
    require_conflict_features: bool = True,
) -> ReplaySample:
    """Load one sample from ``sample_path`` (npz) and its sidecar.

    The sidecar is ``meta_path`` or, by default, the sibling ``.json``; an explicit path never
    falls back. An npz without ``map`` gives a features-only sample. Set
    ``require_conflict_features=False`` for generic (e.g. Gymnasium) data whose sidecar need
    not exist or name the Townlet conflict features.
    Raises :class:`ReplayDataError` (file and field in the message) for a missing, truncated or
    non-zip file, missing arrays, object arrays, a bad sidecar or any :class:`ReplaySample`
    validation failure. A ``feature_names`` list shorter than the feature width is read as
    written with one :class:`~townlet.errors.ShortFeatureNamesWarning`.
    """
    path = Path(sample_path)
    arrays = _read_arrays(path)
    metadata = _sample_sidecar(path, meta_path, require_conflict_features)
    try:
        sample = ReplaySample(**arrays, metadata=metadata)
    except ReplayDataError as exc:
        raise ReplayDataError(f"Replay sample {path}: {exc}") from exc
    _warn_if_short_names(path, metadata, sample.feature_dim)
    return sample


def _warn_if_short_names(path: Path, metadata: Mapping[str, Any], feature_dim: int) -> None:
    # Python's default filter shows a given message once per process, so a streaming
    # dataset that rereads a file every epoch warns about it once.
    reason = short_feature_names(metadata, feature_dim)
    if reason is not None:
        warnings.warn(f"Replay sample {path}: {reason}", ShortFeatureNamesWarning, stacklevel=3)


def _json_default(value: object) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def sidecar_json(metadata: Mapping[str, Any]) -> str:
    """The sidecar text the reference writes: the metadata as JSON with ``indent=2``."""
    return json.dumps(dict(metadata), indent=2, default=_json_default)


def _number_json(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _entry_json(key: str, value: Any) -> str:
    """One top-level entry as ``json.dumps(..., indent=2)`` writes it, between "{\n" and
    "\n}"; a flat dict of numbers (a sample's metrics) without the pure-Python encoder that
    ``indent`` selects."""
    if isinstance(value, dict) and value:
        lines = []
        for k, v in value.items():
            if not isinstance(k, str) or type(v) not in (float, int):
                break
            text = _number_json(v) if type(v) is float else int.__repr__(v)
            lines.append(f"    {_ascii_json(k)}: {text}")
        else:
            return f"  {_ascii_json(key)}: {{\n" + ",\n".join(lines) + "\n  }"
    return json.dumps({key: value}, indent=2, default=_json_default)[2:-2]


def _plain(value: object) -> bool:
    """Whether equal values of this kind always encode alike (no floats: -0.0 == 0.0)."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def sidecar_texts(metadata: Sequence[Mapping[str, Any]]) -> list[str]:
    """``[sidecar_json(m) for m in metadata]``, the same text, with each entry that every
    sidecar shares with the first (same key, position and value) encoded once — a capture's
    sidecars differ only in a few keys (agent, slot, metrics)."""
    if not metadata:
        return []
    first = list(metadata[0].items())
    shared: dict[int, str] = {}
    for index, (key, value) in enumerate(first):
        same = _plain(value) and all(
            key in m and type(m[key]) is type(value) and m[key] == value for m in metadata
        )
        if same:
            shared[index] = _entry_json(key, value)
    texts = []
    for meta in metadata:
        items = list(meta.items())
        if not items:
            texts.append("{}")
            continue
        parts = [
            shared[i] if i in shared and items[i][0] == first[i][0] else _entry_json(*items[i])
            for i in range(len(items))
        ]
        texts.append("{\n" + ",\n".join(parts) + "\n}")
    return texts


def save_replay_sample(
    sample: ReplaySample,
    sample_path: str | os.PathLike[str],
    meta_path: str | os.PathLike[str] | None = None,
    *,
    compress: bool = True,
) -> tuple[Path, Path]:
    """Write ``sample`` as an npz (the seven reference members in reference order; deflated
    when ``compress``) and its metadata as a json sidecar (default: sibling ``.json``).

    Both writes are atomic; parent directories are created. Returns ``(sample_path,
    meta_path)``. Raises ``TypeError`` for metadata that is not JSON serialisable.
    """
    path = Path(sample_path)
    meta = Path(meta_path) if meta_path is not None else default_meta_path(path)
    text = sidecar_json(sample.metadata)  # fail before touching any file
    arrays = {key: np.asarray(getattr(sample, key)) for key in NPZ_KEYS}

    def write_npz(handle: IO[bytes]) -> None:
        if compress:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
        else:
            np.savez(handle, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write_npz)
    atomic_write(meta, lambda fh: fh.write(text.encode("utf-8")))
    return path, meta


@attrs.frozen(kw_only=True)
class SampleHeader:
    """What a streaming dataset knows about a sample without reading its arrays: the
    normalised array shapes (from the npy headers) and the sidecar."""

    sample_path: Path
    meta_path: Path | None
    shapes: Mapping[str, Shape]
    metadata: Mapping[str, Any]

    @property
    def signature(self) -> Signature:
        """The bucketing signature, equal to that of the loaded sample."""
        return signature_of(self.shapes)


def _member_header(archive: zipfile.ZipFile, key: str) -> tuple[Shape, np.dtype[Any]]:
    with archive.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(n) for n in shape), dtype


def read_sample_header(
    sample_path: str | os.PathLike[str],
    meta_path: str | os.PathLike[str] | None = None,
    *,
    require_conflict_features: bool = True,
) -> SampleHeader:
    """Validate a sample from its npy headers and sidecar without loading the arrays.

    Checks members, dtypes, shapes and sidecar consistency as :func:`load_replay_sample` does;
    value checks (NaN/Inf, negative actions) happen when the sample is loaded.
    Raises :class:`ReplayDataError` naming the file and the field.
    """
    path = Path(sample_path)
    if not path.is_file():
        raise ReplayDataError(f"Replay sample {path} not found")
    shapes: dict[str, Shape] = {}
    key = "(archive)"
    try:
        with zipfile.ZipFile(path) as archive:
            members = [n.removesuffix(".npy") for n in archive.namelist()]
            _check_members(path, members)
            for key in NPZ_KEYS:
                if key in members:
                    shape, dtype = _member_header(archive, key)
                    check_dtype(key, dtype)
                    shapes[key] = normalized_shape(key, shape)
            shapes.setdefault("map", (shapes["actions"][0] if shapes["actions"] else 0, 0, 0, 0))
            check_array_shapes(shapes)
    except ReplayDataError as exc:
        raise ReplayDataError(f"Replay sample {path}: {exc}") from exc
    except _READ_ERRORS as exc:
        raise ReplayDataError(_unreadable(path, key, exc)) from None
    metadata = _sample_sidecar(path, meta_path, require_conflict_features)
    try:
        check_metadata(metadata, shapes)
    except ReplayDataError as exc:
        raise ReplayDataError(f"Replay sample {path}: {exc}") from exc
    _warn_if_short_names(path, metadata, shapes["features"][1])
    explicit = Path(meta_path) if meta_path is not None else None
    return SampleHeader(sample_path=path, meta_path=explicit, shapes=shapes, metadata=metadata)
