"""ReplaySample: one agent's trajectory, validated when it is built.

The arrays follow the Townlet replay format (``spec/reference-replay_rollout.md`` §5–§6): ``map``
``(T, C, H, W)`` float32, ``features`` ``(T, D)`` float32, ``actions`` ``(T,)`` int64,
``old_log_probs``/``rewards`` ``(T,)`` float32, ``dones`` ``(T,)`` bool and ``value_preds``
``(T+1,)`` float32 (a ``(T,)`` array, without bootstrap value, is accepted). A sample without a
spatial map (a Gymnasium vector observation) has ``map`` of shape ``(T, 0, 0, 0)``.

Shape checks work on shapes alone (:func:`normalized_shape`, :func:`check_array_shapes`) so that
a streaming dataset can validate a file from its npy headers without reading the data.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from townlet._input_limits import short_repr as value_repr
from townlet._summary import record_dict, short_repr
from townlet.errors import ReplayDataError

REQUIRED_CONFLICT_FEATURES: tuple[str, ...] = ("rivalry_max", "rivalry_avoid_count")
# The largest discrete action space a sample may declare (a policy head of this many logits
# is already ~100 MB at hidden size 256); bounds action ids and ``action_dim`` before anything
# is allocated from them.
MAX_ACTIONS = 100_000
STEP_ARRAY_FIELDS: tuple[str, ...] = ("actions", "old_log_probs", "rewards", "dones")
TRAINING_ARRAY_FIELDS: tuple[str, ...] = (*STEP_ARRAY_FIELDS, "value_preds")
# The npz member order the reference writes.
NPZ_KEYS: tuple[str, ...] = (
    "map",
    "features",
    "actions",
    "old_log_probs",
    "value_preds",
    "rewards",
    "dones",
)
_FLOAT_FIELDS = frozenset({"map", "features", "old_log_probs", "value_preds", "rewards"})

Shape = tuple[int, ...]
# (map shape, features shape, (actions, old_log_probs, rewards, dones, value_preds) shapes)
Signature = tuple[Shape, Shape, tuple[Shape, ...]]


def check_dtype(field: str, dtype: np.dtype[Any]) -> None:
    """Raise :class:`ReplayDataError` unless ``dtype`` can be stored in ``field`` without loss of
    meaning: numbers for float fields, integers for ``actions``, bools/integers for ``dones``."""
    if dtype.hasobject:
        raise ReplayDataError(f"ReplaySample.{field} is an object array (pickled data refused)")
    allowed = "iu" if field == "actions" else "biu" if field == "dones" else "iuf"
    if dtype.kind not in allowed:
        wanted = {"actions": "an integer", "dones": "a bool"}.get(field, "a float")
        raise ReplayDataError(f"ReplaySample.{field} must have {wanted} dtype, got {dtype}")


def normalized_shape(field: str, shape: Shape) -> Shape:
    """The shape ``field`` takes after the reference's normalisation: a scalar becomes ``(1,)``,
    a 3-D map ``(1, C, H, W)`` and a 1-D feature vector ``(1, D)`` (one timestep)."""
    if len(shape) == 0:
        return (1,)
    if field == "map" and len(shape) == 3:
        return (1, *shape)
    if field == "features" and len(shape) == 1:
        return (1, *shape)
    return shape


def check_array_shapes(shapes: Mapping[str, Shape]) -> int:
    """Check normalised shapes of the seven arrays against each other; return T.

    Raises :class:`ReplayDataError` naming the field: step arrays must be 1-D and share T,
    ``map`` must be ``(T, C, H, W)``, ``features`` ``(T, D)``, ``value_preds`` T or T+1 long.
    """
    timesteps = shapes["actions"][0] if shapes["actions"] else 0
    for field in TRAINING_ARRAY_FIELDS:
        shape = shapes[field]
        if len(shape) != 1:
            raise ReplayDataError(f"ReplaySample.{field} must be 1D, got shape {shape}")
        if field in STEP_ARRAY_FIELDS and shape[0] != timesteps:
            raise ReplayDataError(
                "ReplaySample training arrays must share timestep length; "
                f"expected {timesteps}, got {shape[0]} for {field}"
            )
    for field, rank, form in (("map", 4, "(timesteps, channels, H, W)"), ("features", 2, "")):
        shape = shapes[field]
        if len(shape) != rank:
            form = form or "(timesteps, feature_dim)"
            raise ReplayDataError(f"ReplaySample.{field} must have shape {form}, got {shape}")
        if shape[0] != timesteps:
            raise ReplayDataError(
                f"ReplaySample.{field} timestep count must match training arrays; "
                f"expected {timesteps}, got {shape[0]}"
            )
    if timesteps == 0:
        raise ReplayDataError("ReplaySample must hold at least one timestep")
    steps = shapes["value_preds"][0]
    if steps not in (timesteps, timesteps + 1):
        raise ReplayDataError(
            "ReplaySample.value_preds must have length matching timesteps or timesteps + 1; "
            f"got {steps} for {timesteps} step(s)"
        )
    return timesteps


def check_metadata(metadata: Mapping[str, Any], shapes: Mapping[str, Shape]) -> None:
    """Check the sidecar keys that describe the arrays against their shapes.

    ``feature_names`` (when present) must be a list of at most ``D`` strings: a shorter list
    names the first columns only, as the reference's own fixtures do (the file loaders warn
    once per file, see :func:`short_feature_names`); ``timesteps`` and ``value_pred_steps``
    (when present) must equal the array lengths. The reference kept wrong values silently; a
    mismatch here usually means a sidecar paired with the wrong npz.

    Raises ``ReplayDataError`` naming the key that disagrees.
    """
    names = metadata.get("feature_names")
    if names is not None:
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise ReplayDataError("ReplaySample.metadata['feature_names'] must be a list of str")
        if len(names) > shapes["features"][1]:
            raise ReplayDataError(
                f"ReplaySample.metadata['feature_names'] has {len(names)} names but features "
                f"have {shapes['features'][1]} columns"
            )
    for key, actual in (
        ("timesteps", shapes["actions"][0]),
        ("value_pred_steps", shapes["value_preds"][0]),
    ):
        value = metadata.get(key)
        if value is not None and (not _is_int(value) or value != actual):
            raise ReplayDataError(
                f"ReplaySample.metadata[{key!r}] is {value_repr(value)} "
                f"but the arrays give {actual}"
            )
    action_dim = metadata.get("action_dim")
    if action_dim is not None and (not _is_int(action_dim) or not 1 <= action_dim <= MAX_ACTIONS):
        raise ReplayDataError(
            f"ReplaySample.metadata['action_dim'] must be a positive int (at most {MAX_ACTIONS}), "
            f"got {value_repr(action_dim)}"
        )


def short_feature_names(metadata: Mapping[str, Any], feature_dim: int) -> str | None:
    """Why ``metadata["feature_names"]`` names fewer than ``feature_dim`` columns, or None.

    The reference never compared the list with the feature width, and its own test fixtures
    hold 2 names for 4 columns (and 0 for 1). Such a list is kept as written (not padded), so
    the file reads back unchanged; the unnamed trailing columns are used for training but no
    name-based metric (``rivalry_max_mean``, …) can refer to them.
    """
    names = metadata.get("feature_names")
    if not isinstance(names, list | tuple) or len(names) >= feature_dim:
        return None
    return (
        f"feature_names has {len(names)} names for {feature_dim} feature columns; "
        f"columns {len(names)}..{feature_dim - 1} are unnamed (accepted, as the reference does)"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _as_array(field: str, value: object) -> NDArray[Any]:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ReplayDataError(f"ReplaySample.{field} must be a numpy array: {exc}") from exc
    check_dtype(field, array.dtype)
    return array.reshape(normalized_shape(field, array.shape))


def _read_only(array: NDArray[Any]) -> NDArray[Any]:
    # A view, so the caller's array keeps its flags; the record cannot be written through.
    view = array.view()
    view.flags.writeable = False
    return view


def _float_array(field: str, value: object) -> NDArray[np.float32]:
    array = _as_array(field, value).astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ReplayDataError(f"ReplaySample.{field} contains {bad} NaN/Inf value(s)")
    return _read_only(array)


def _convert_map(value: object) -> NDArray[np.float32]:
    return _float_array("map", value)


def _convert_features(value: object) -> NDArray[np.float32]:
    return _float_array("features", value)


def _convert_old_log_probs(value: object) -> NDArray[np.float32]:
    return _float_array("old_log_probs", value)


def _convert_value_preds(value: object) -> NDArray[np.float32]:
    return _float_array("value_preds", value)


def _convert_rewards(value: object) -> NDArray[np.float32]:
    return _float_array("rewards", value)


def _convert_actions(value: object) -> NDArray[np.int64]:
    array = _as_array("actions", value)
    if array.size and int(array.min()) < 0:
        raise ReplayDataError(f"ReplaySample.actions must be >= 0, got {int(array.min())}")
    if array.size and int(array.max()) >= MAX_ACTIONS:  # uint64 2**64-1 would wrap to -1
        raise ReplayDataError(
            f"ReplaySample.actions must be < {MAX_ACTIONS}, got {int(array.max())}"
        )
    return _read_only(array.astype(np.int64, copy=False))


def _convert_dones(value: object) -> NDArray[np.bool_]:
    array = _as_array("dones", value)
    if array.dtype.kind != "b" and not np.isin(array, (0, 1)).all():
        raise ReplayDataError("ReplaySample.dones must be bool (or integers 0/1)")
    return _read_only(array.astype(np.bool_, copy=False))


def _convert_metadata(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


def _empty_map(sample: ReplaySample) -> NDArray[np.float32]:
    return np.zeros((len(np.atleast_1d(sample.actions)), 0, 0, 0), dtype=np.float32)


@attrs.frozen(kw_only=True, eq=False)
class ReplaySample:
    """One agent trajectory of T steps in the Townlet replay format.

    Arrays are converted to the canonical dtypes (float32/int64/bool; non-numeric, object or
    lossy dtypes raise) and held as read-only views. ``map`` defaults to ``(T, 0, 0, 0)``
    (features-only sample). ``metadata`` is the json sidecar; ``training_arrays``, ``timesteps``
    and ``value_pred_steps`` are filled in when absent, as the reference did.

    Raises :class:`ReplayDataError` naming the field for wrong dtypes, ranks or lengths,
    NaN/Inf in a float array, negative actions, an ``action_dim`` below ``max(actions) + 1``, or
    sidecar keys that disagree with the arrays.
    """

    __repr__ = short_repr
    to_dict = record_dict

    features: NDArray[np.float32] = attrs.field(converter=_convert_features)
    actions: NDArray[np.int64] = attrs.field(converter=_convert_actions)
    old_log_probs: NDArray[np.float32] = attrs.field(converter=_convert_old_log_probs)
    value_preds: NDArray[np.float32] = attrs.field(converter=_convert_value_preds)
    rewards: NDArray[np.float32] = attrs.field(converter=_convert_rewards)
    dones: NDArray[np.bool_] = attrs.field(converter=_convert_dones)
    map: NDArray[np.float32] = attrs.field(
        default=attrs.Factory(_empty_map, takes_self=True), converter=_convert_map
    )
    metadata: Mapping[str, Any] = attrs.field(factory=dict, converter=_convert_metadata)

    def __attrs_post_init__(self) -> None:
        shapes = array_shapes(self)
        timesteps = check_array_shapes(shapes)
        check_metadata(self.metadata, shapes)
        max_action = int(self.actions.max())
        declared = self.metadata.get("action_dim")
        if declared is not None and declared <= max_action:
            raise ReplayDataError(
                f"ReplaySample.metadata['action_dim'] is {declared} but actions reach {max_action}"
            )
        metadata = dict(self.metadata)
        metadata.setdefault("training_arrays", list(TRAINING_ARRAY_FIELDS))
        metadata.setdefault("timesteps", timesteps)
        metadata.setdefault("value_pred_steps", len(self.value_preds))
        # Frozen record: the derived sidecar is fixed once here, then read-only.
        object.__setattr__(self, "metadata", types.MappingProxyType(metadata))

    @property
    def timesteps(self) -> int:
        """T, the number of steps."""
        return len(self.actions)

    @property
    def feature_dim(self) -> int:
        """D, the feature vector length."""
        return int(self.features.shape[1])

    @property
    def map_shape(self) -> Shape:
        """``(C, H, W)`` of one map frame; ``(0, 0, 0)`` for a features-only sample."""
        return tuple(int(n) for n in self.map.shape[1:])

    @property
    def has_map(self) -> bool:
        """Whether the sample carries a non-empty spatial map."""
        return self.map.size > 0

    @property
    def has_bootstrap_value(self) -> bool:
        """Whether ``value_preds`` holds T+1 values (the last one bootstraps GAE)."""
        return len(self.value_preds) == self.timesteps + 1

    @property
    def action_dim(self) -> int:
        """The sidecar's ``action_dim`` when present, else ``max(actions) + 1``."""
        declared = self.metadata.get("action_dim")
        return int(declared) if declared is not None else int(self.actions.max()) + 1

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """The sidecar's ``feature_names`` as a tuple, or None when absent."""
        return metadata_feature_names(self.metadata)

    def conflict_stats(self) -> dict[str, float]:
        """``{rivalry_max: mean, rivalry_avoid_count: mean}`` over time (see
        :func:`sample_conflict_stats`)."""
        return sample_conflict_stats(self)


def metadata_feature_names(metadata: Mapping[str, Any]) -> tuple[str, ...] | None:
    """``metadata["feature_names"]`` as a tuple, or None when it is absent or not a list."""
    names = metadata.get("feature_names")
    return tuple(names) if isinstance(names, list | tuple) else None


def array_shapes(sample: ReplaySample) -> dict[str, Shape]:
    """The shapes of the seven arrays of ``sample``, keyed by npz member name."""
    return {key: tuple(int(n) for n in getattr(sample, key).shape) for key in NPZ_KEYS}


def signature_of(shapes: Mapping[str, Shape]) -> Signature:
    """The bucketing signature (spec §8.1) from normalised array shapes."""
    steps = tuple(
        shapes[f] for f in ("actions", "old_log_probs", "rewards", "dones", "value_preds")
    )
    return (shapes["map"], shapes["features"], steps)


def sample_signature(sample: ReplaySample) -> Signature:
    """The bucketing signature of ``sample``: samples batch together only when equal."""
    return signature_of(array_shapes(sample))


def sample_conflict_stats(sample: ReplaySample) -> dict[str, float]:
    """Mean over time of each conflict feature present in ``feature_names``; ``{}`` without
    names. Keys carry no suffix (reference §5)."""
    names = sample.feature_names
    if names is None:
        return {}
    return {
        name: float(sample.features[:, names.index(name)].mean())
        for name in REQUIRED_CONFLICT_FEATURES
        if name in names
    }
