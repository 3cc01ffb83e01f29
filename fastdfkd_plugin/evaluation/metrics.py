"""How a compressed model compares with its teacher, and a run's measurements as JSON lines and a plot against time.

:func:`agreement` is what distillation, pruning and the quantization adapters report when
there are no labels: the share of inputs (pixels, for class maps) on which the model and the
teacher pick the same class, as the teacher's task measures it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..runtime.io import atomic_path
from ..runtime.optional import require
from ..teacher.teacher import OutputTransform, Teacher, model_device, outputs_of


@torch.no_grad()
def agreement(teacher: Teacher, model: nn.Module, inputs: torch.Tensor, batch_size: int | None = None,
              model_output_transform: OutputTransform | None = None) -> float:
    """Fraction of ``inputs`` on which ``model`` and the teacher agree: same top-1 class (per pixel for class
    maps; for generic outputs, outputs within 5 % relative L1 error of the teacher's).

    ``model_output_transform`` picks the model's outputs (for a pruned or quantized copy
    of a tuple-output teacher, pass ``teacher.output_transform``). ``batch_size``: default
    256 inputs at 32×32 px, fewer for larger ones.
    """
    device = model_device(model)
    same = total = 0.0
    for chunk in inputs.split(batch_size or eval_chunk(teacher.input_shape)):
        matched, count = teacher.task.agreement(teacher.predict(chunk), outputs_of(model(chunk.to(device)), model_output_transform))
        same, total = same + matched, total + count
    return same / total


def eval_chunk(input_shape: tuple[int, int, int]) -> int:
    """Inputs per forward pass when evaluating: 256 at 32×32 px, as many pixels at larger sizes."""
    return max(1, 256 * 32 * 32 // (input_shape[1] * input_shape[2]))


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
