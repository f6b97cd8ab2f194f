"""Training curves as PNG files (matplotlib, the ``plot`` extra; imported only when called).

``plot_telemetry`` draws one panel per telemetry key against the epoch index, for a log path or
records of any version; the file is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from townlet._atomic import atomic_write
from townlet.dto.policy import PPOTrainingResult
from townlet.dto.telemetry_table import telemetry_columns

_INSTALL_HINT = "install the plot extra: pip install 'townlet[plot]'"
PLOT_KEYS: tuple[str, ...] = ("loss_total", "loss_value", "kl_divergence", "clip_fraction")


def import_pyplot() -> Any:
    """matplotlib's ``pyplot`` on the non-interactive Agg backend.

    Raises ``ImportError`` with the install hint when matplotlib is missing.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"plots need matplotlib; {_INSTALL_HINT}") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Write a matplotlib figure as PNG to ``path`` atomically and close it; returns the path."""
    try:
        return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=110))
    finally:
        import_pyplot().close(figure)


def plot_telemetry(
    source: str | Path | Iterable[PPOTrainingResult],
    path: str | os.PathLike[str],
    *,
    keys: Sequence[str] = PLOT_KEYS,
    title: str | None = None,
) -> Path:
    """Plot ``keys`` of a telemetry log (path or records) per epoch line into a PNG at ``path``.

    Values a record lacks are left out of its panel. Raises :class:`~townlet.errors.TelemetryError`
    for an unreadable log or an unknown key, ``ImportError`` without matplotlib.
    """
    columns = telemetry_columns(source, keys)
    plt = import_pyplot()
    figure, axes = plt.subplots(len(keys), 1, figsize=(7, 1.9 * len(keys) + 0.6), sharex=True)
    axes = [axes] if len(keys) == 1 else list(axes)
    for axis, key in zip(axes, keys, strict=True):
        points = [(i + 1, v) for i, v in enumerate(columns[key]) if isinstance(v, int | float)]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker=".", linewidth=1.2)
        axis.set_ylabel(key, fontsize=8)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("telemetry line (epoch)")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title or (str(source) if isinstance(source, str | Path) else "telemetry"))
    figure.tight_layout()
    return save_figure(figure, path)
