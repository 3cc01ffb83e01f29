"""The benchmarks' figures, drawn by matplotlib to files only (no display needed).

Accuracy over training time is the one figure several benchmarks draw (distillation per
source, pruning recovery per source and speed-up), so it is one function here with one
look; matplotlib is imported on first use, since only a finished run draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


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


def seed_bars(results: dict[str, Any], path: Path, ticks: list[str], bars: list[tuple[str, str]],
              seeds: Callable[[dict[str, Any], str, tuple[str, str]], list[float]], *, hatched: str) -> None:
    """One panel per teacher: at each tick a bar per (first, second) in ``bars``, the mean over seeds of
    ``seeds(teacher, tick, bar)`` (test_a accuracies) with their standard deviation, hatched where the second is
    ``hatched``; FP32 as a dashed line."""
    plt = pyplot()
    teachers = results["teachers"]
    figure, axes = plt.subplots(1, len(teachers), figsize=(6 * len(teachers), 5), squeeze=False)
    width = 0.8 / len(bars)
    for axis, teacher in zip(axes[0], teachers):
        for index, bar in enumerate(bars):
            values = np.array([seeds(teacher, tick, bar) for tick in ticks])
            axis.bar(np.arange(len(ticks)) + index * width, values.mean(1), width, yerr=values.std(1),
                     label=", ".join(bar), hatch="//" if bar[1] == hatched else "")
        axis.axhline(teacher["fp32"]["test_a"], color="grey", linestyle="--", label="FP32")
        axis.set_xticks(np.arange(len(ticks)) + 0.4 - width / 2, ticks)
        axis.set(title=teacher["teacher"], ylabel="test_a accuracy (%)")
        axis.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
