"""Per-sample metrics, their aggregation, and the social event counters of a rollout.

:func:`compute_sample_metrics` and :func:`aggregate_metrics` reproduce the reference's numbers
exactly (``spec/reference-replay_rollout.md`` §9.1–§9.2; checked against the corpus's
``rollout_sample_metrics.json`` files). :class:`ReplayEventCounts` and :func:`record_events`
are the §9.3 counters, as a record and a pure fold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from townlet._input_limits import short_repr
from townlet.errors import ReplayDataError
from townlet.policy.replay.sample import REQUIRED_CONFLICT_FEATURES, ReplaySample


def compute_sample_metrics(sample: ReplaySample) -> dict[str, float]:
    """Summary metrics of one sample, all floats, in the reference's key order.

    Keys: ``timesteps, reward_sum, reward_mean, log_prob_mean, value_pred_last``; per conflict
    feature ``<f>_mean``/``<f>_max``; ``reward_feature_mean`` and ``lateness_mean`` when those
    features exist; ``action_nonzero, action_total, action_entropy`` (natural log); one
    ``action_<kind>_count`` per payload kind when the sidecar has an ``action_lookup``; and
    ``action_blocked_ratio``.
    """
    rewards, log_probs, values = sample.rewards, sample.old_log_probs, sample.value_preds
    metrics: dict[str, float] = {
        "timesteps": float(len(rewards)),
        "reward_sum": float(rewards.sum()),
        "reward_mean": float(rewards.mean()) if rewards.size else 0.0,
        "log_prob_mean": float(log_probs.mean()) if log_probs.size else 0.0,
        "value_pred_last": float(values[-1]) if values.size else 0.0,
    }
    metrics.update(_feature_metrics(sample))
    metrics.update(_action_metrics(sample))
    return metrics


def _feature_metrics(sample: ReplaySample) -> dict[str, float]:
    names = sample.feature_names
    if names is None:
        return {}
    out: dict[str, float] = {}
    for name in REQUIRED_CONFLICT_FEATURES:
        if name in names:
            column = sample.features[:, names.index(name)]
            out[f"{name}_mean"] = float(column.mean())
            out[f"{name}_max"] = float(column.max())
    for name, key in (("reward_total", "reward_feature_mean"), ("lateness_counter", "")):
        if name in names:
            out[key or "lateness_mean"] = float(sample.features[:, names.index(name)].mean())
    return out


def _action_metrics(sample: ReplaySample) -> dict[str, float]:
    actions = sample.actions
    counts = np.bincount(actions, minlength=int(actions.max()) + 1)
    total = int(counts.sum())
    probs = counts / total
    entropy = -float(sum(p * np.log(max(p, 1e-8)) for p in probs if p > 0))
    out: dict[str, float] = {
        "action_nonzero": float(np.count_nonzero(counts)),
        "action_total": float(total),
        "action_entropy": entropy,
    }
    blocked = 0
    lookup = sample.metadata.get("action_lookup")
    if isinstance(lookup, dict):
        payloads = _payloads_by_id(lookup)
        for action_id in np.flatnonzero(counts):
            payload = payloads.get(int(action_id), {})
            key = f"action_{payload.get('kind', 'unknown')}_count"
            out[key] = out.get(key, 0.0) + float(counts[action_id])
            if payload.get("blocked"):
                blocked += int(counts[action_id])
    out["action_blocked_ratio"] = blocked / total if total else 0.0
    return out


def _payloads_by_id(lookup: Mapping[Any, Any]) -> dict[int, dict[str, Any]]:
    # A lookup maps payload JSON -> id (captures) or id -> payload JSON (hand-made files).
    raw: dict[int, str] = {}
    for key, value in lookup.items():
        if isinstance(value, int) and not isinstance(value, bool):
            raw[value] = str(key)
            continue
        try:
            raw[int(key)] = str(value)
        except (TypeError, ValueError):
            continue
    return {action_id: _parse_payload(text) for action_id, text in raw.items()}


def _parse_payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested too deep: keep the text
        return {"raw": text}
    return payload if isinstance(payload, dict) else {"raw": text}


def _metric_value(key: str, value: object) -> float:
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            pass
    raise ReplayDataError(f"metric {short_repr(key)}: expected a number, got {short_repr(value)}")


def aggregate_metrics(metrics: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Combine per-sample metric dicts (reference §9.2).

    Returns ``{}`` for no dicts (or only empty ones); else ``sample_count`` = N followed, in
    first-appearance order, by each key: keys ending ``_sum``/``_total`` are summed and get a
    ``<key>_mean`` = sum / N; other keys are averaged over the dicts that hold them.
    """
    items = list(metrics)
    if not any(items):
        return {}
    count = len(items)
    sums: dict[str, float] = {}
    seen: dict[str, int] = {}
    for item in items:
        for key, value in item.items():
            sums[key] = sums.get(key, 0.0) + _metric_value(key, value)
            seen[key] = seen.get(key, 0) + 1
    out: dict[str, float] = {"sample_count": float(count)}
    for key, total in sums.items():
        if key.endswith(("_sum", "_total")):
            out[key] = total
            out[f"{key}_mean"] = total / count
        else:
            out[key] = total / seen[key]
    return out


def _count(value: int) -> int:
    if value < 0:
        raise ReplayDataError(f"event count must be >= 0, got {value}")
    return value


@attrs.frozen(kw_only=True)
class ReplayEventCounts:
    """Social event counters of a rollout (reference §9.3); zero for disk datasets.

    Field names are the PPO summary keys they feed. ``chat_quality_sum`` accumulates the
    ``quality`` of successful chats; :attr:`chat_quality_mean` divides it by the successes.
    """

    queue_conflict_events: int = attrs.field(default=0, converter=_count)
    queue_conflict_intensity_sum: float = attrs.field(default=0.0, converter=float)
    shared_meal_events: int = attrs.field(default=0, converter=_count)
    late_help_events: int = attrs.field(default=0, converter=_count)
    shift_takeover_events: int = attrs.field(default=0, converter=_count)
    chat_success_events: int = attrs.field(default=0, converter=_count)
    chat_failure_events: int = attrs.field(default=0, converter=_count)
    chat_quality_sum: float = attrs.field(default=0.0, converter=float)

    @property
    def chat_quality_mean(self) -> float:
        """Mean quality of successful chats, 0.0 when there were none."""
        if not self.chat_success_events:
            return 0.0
        return self.chat_quality_sum / self.chat_success_events

    def to_dict(self) -> dict[str, float]:
        """The eight PPO summary keys (counts as floats), ``chat_quality_mean`` last."""
        return {
            "queue_conflict_events": float(self.queue_conflict_events),
            "queue_conflict_intensity_sum": self.queue_conflict_intensity_sum,
            "shared_meal_events": float(self.shared_meal_events),
            "late_help_events": float(self.late_help_events),
            "shift_takeover_events": float(self.shift_takeover_events),
            "chat_success_events": float(self.chat_success_events),
            "chat_failure_events": float(self.chat_failure_events),
            "chat_quality_mean": self.chat_quality_mean,
        }


_EVENT_FIELDS = {
    "queue_conflict": "queue_conflict_events",
    "shared_meal": "shared_meal_events",
    "employment_helped_when_late": "late_help_events",
    "employment_took_my_shift": "shift_takeover_events",
    "chat_success": "chat_success_events",
    "chat_failure": "chat_failure_events",
}


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def record_event(counts: ReplayEventCounts, event: Mapping[str, Any]) -> ReplayEventCounts:
    """Return ``counts`` updated by one world event (``event["event"]`` names its kind).

    ``queue_conflict`` adds its numeric ``intensity``; ``chat_success`` its numeric ``quality``;
    unknown kinds (and ``queue_interaction``) leave the counts unchanged.
    """
    field = _EVENT_FIELDS.get(str(event.get("event")))
    if field is None:
        return counts
    changes: dict[str, Any] = {field: getattr(counts, field) + 1}
    extra = {"queue_conflict": "intensity", "chat_success": "quality"}.get(str(event["event"]))
    amount = _number(event.get(extra)) if extra else None
    if extra == "intensity" and amount is not None:
        changes["queue_conflict_intensity_sum"] = counts.queue_conflict_intensity_sum + amount
    if extra == "quality" and amount is not None:
        changes["chat_quality_sum"] = counts.chat_quality_sum + amount
    return attrs.evolve(counts, **changes)


def record_events(
    counts: ReplayEventCounts, events: Iterable[Mapping[str, Any]]
) -> ReplayEventCounts:
    """Fold :func:`record_event` over ``events``."""
    for event in events:
        counts = record_event(counts, event)
    return counts
