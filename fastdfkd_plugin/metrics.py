"""A distillation run's metrics as JSON lines, and a plot of them against time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .io import atomic_path
from .optional import require


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """One JSON object per line, rewritten atomically (a resumed run rewrites the whole history)."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(record) + "\n" for record in records))


def require_matplotlib() -> Any:
    """matplotlib's pyplot (headless), or one sentence naming the extra; call it before long work."""
    require("matplotlib", "bench", "matplotlib, which draws the plots (or pass --no-plot),").use("Agg")
    return require("matplotlib.pyplot", "bench")


def plot_against_time(path: str | Path, records: list[dict[str, Any]], title: str = "distillation") -> None:
    """Every metric in ``records`` (one panel each) against training minutes, as a PNG."""
    plt = require_matplotlib()
    names = list(dict.fromkeys(key for record in records for key in record if key not in ("step", "seconds")))
    figure, axes = plt.subplots(1, max(len(names), 1), figsize=(4.5 * max(len(names), 1), 3.5), squeeze=False)
    minutes = [record["seconds"] / 60 for record in records]
    for axis, name in zip(axes[0], names):
        axis.plot(minutes, [record.get(name) for record in records], marker="o")
        axis.set(xlabel="training time (min)", ylabel=f"{name} (%)" if name in ("accuracy", "agreement") else name,
                 title=f"{title}: {name}")
        if name == "loss":
            axis.set_yscale("log")  # the first losses would flatten the rest on a linear axis
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
