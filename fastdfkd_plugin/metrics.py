"""How a compressed model compares with its teacher, and a run's measurements as JSON lines and a plot against time.

:func:`agreement` is what distillation, pruning and the quantization adapters report when
there are no labels: the share of inputs on which the model and the teacher pick the same class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io import atomic_path
from .optional import require
from .teacher import OutputTransform, Teacher, logits_of, model_device


@torch.no_grad()
def agreement(teacher: Teacher, model: nn.Module, inputs: torch.Tensor, batch_size: int = 256,
              model_output_transform: OutputTransform | None = None) -> float:
    """Fraction of ``inputs`` on which ``model`` and the teacher predict the same class.

    ``model_output_transform`` picks the model's logits (for a pruned or quantized copy
    of a tuple-output teacher, pass ``teacher.output_transform``).
    """
    device = model_device(model)
    same = 0
    for chunk in inputs.split(batch_size):
        expected = teacher.predict(chunk).argmax(1)
        predicted = logits_of(model(chunk.to(device)), model_output_transform).argmax(1)
        same += int((expected == predicted.to(expected.device)).sum())
    return same / len(inputs)


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
