"""How realistic a set of inputs looks to the teacher (no labels of the real data needed).

* ``bn_distance``: the BN-statistics loss of the whole set taken as one population,
  ``Σ_layers ‖μ − running_mean‖₂ + ‖σ² − running_var‖₂`` (lower is closer to the
  training data the teacher saw; ``None`` for a teacher without BatchNorm);
* ``confidence``: the teacher's mean top-1 probability (per pixel for class maps);
* ``class_histogram``: how many inputs (pixels) the teacher assigns to each class.

Both are ``None`` for a teacher whose outputs are not class scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..teacher.batchnorm import BatchNormStatistics
from ..teacher.teacher import Teacher


@dataclass
class SetQuality:
    bn_distance: float | None
    confidence: float | None
    class_histogram: list[int] | None
    label_agreement: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def set_quality(
    teacher: Teacher,
    inputs: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
) -> SetQuality:
    """Measure ``inputs`` (normalised, N×C×H×W) through the frozen teacher."""
    layers = teacher.batchnorm_layers()
    with BatchNormStatistics(layers) as statistics:
        outputs = teacher.predict(inputs, batch_size)
    distance = 0.0
    for layer in layers:
        mean, var = statistics.mean(layer), statistics.variance(layer)
        distance += float(torch.norm(mean - layer.running_mean.double(), 2) + torch.norm(var - layer.running_var.double(), 2))
    histogram = teacher.task.class_histogram(outputs)
    classes = None if histogram is None else teacher.task.labels(outputs).cpu()
    return SetQuality(
        bn_distance=distance if layers else None,
        confidence=None if histogram is None else outputs.softmax(1).max(1).values.mean().item(),
        class_histogram=histogram,
        label_agreement=(None if labels is None or classes is None or classes.shape != labels.shape
                         else (classes == labels.cpu()).float().mean().item() * 100),
    )
