"""The benchmarks' figures, drawn by matplotlib to files only (no display needed).

Accuracy over training time is the one figure several benchmarks draw (distillation per
source, pruning recovery per source and speed-up), so it is one function here with one
look; matplotlib is imported on first use, since only a finished run draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, which writes files without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Panel:
    """One axis of :func:`accuracy_over_time`: a curve per run, and a dashed reference line."""

    title: str
    runs: list[dict[str, Any]]  # each {"source": label, "curve": [{"seconds": ..., "accuracy": ...}, ...]}
    reference: float
    reference_label: str


def accuracy_over_time(panels: list[Panel], path: Path, *, xlabel: str, ylabel: str,
                       panel_size: tuple[float, float] = (6, 4), metric: str = "accuracy") -> None:
    """``metric`` (%, accuracy unless told) against training time in minutes, one panel beside the other, written to
    ``path`` (PNG at 120 dpi)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        for run in panel.runs:
            axis.plot([e["seconds"] / 60 for e in run["curve"]], [e[metric] for e in run["curve"]], marker="o", label=run["source"])
        axis.axhline(panel.reference, color="grey", linestyle="--", label=panel.reference_label)
        axis.set(title=panel.title, xlabel=xlabel, ylabel=ylabel)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
