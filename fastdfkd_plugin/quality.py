"""How realistic a set of inputs looks to the teacher (no labels of the real data needed).

* ``bn_distance``: the BN-statistics loss of the whole set taken as one population,
  ``Σ_layers ‖μ − running_mean‖₂ + ‖σ² − running_var‖₂`` (lower is closer to the
  training data the teacher saw);
* ``confidence``: the teacher's mean top-1 probability;
* ``class_histogram``: how many inputs the teacher assigns to each class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .teacher import OutputTransform, batchnorm_layers, frozen, model_device, teacher_logits


@dataclass
class SetQuality:
    bn_distance: float
    confidence: float
    class_histogram: list[int]
    label_agreement: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def set_quality(
    teacher: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
    output_transform: OutputTransform | None = None,
) -> SetQuality:
    """Measure ``inputs`` (normalised, N×C×H×W) through the frozen teacher."""
    layers = batchnorm_layers(teacher)
    sums: dict[nn.Module, list[torch.Tensor]] = {}

    def accumulate(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = args[0].double().transpose(0, 1).flatten(1)
        stats = [x.sum(1), (x * x).sum(1), torch.tensor(float(x.shape[1]), dtype=torch.float64)]
        sums[module] = stats if module not in sums else [a + b for a, b in zip(sums[module], stats)]

    handles = [layer.register_forward_hook(accumulate) for layer in layers]
    predictions = []
    try:
        with frozen(teacher):
            device = model_device(teacher)
            for chunk in inputs.split(batch_size):
                predictions.append(teacher_logits(teacher(chunk.to(device)), output_transform).float().softmax(1).cpu())
    finally:
        for handle in handles:
            handle.remove()
    distance = 0.0
    for layer in layers:
        total, squares, count = sums[layer]
        mean = total / count
        var = squares / count - mean * mean
        distance += float(torch.norm(mean - layer.running_mean.double(), 2) + torch.norm(var - layer.running_var.double(), 2))
    probabilities = torch.cat(predictions)
    top = probabilities.argmax(1)
    return SetQuality(
        bn_distance=distance,
        confidence=probabilities.max(1).values.mean().item(),
        class_histogram=torch.bincount(top, minlength=probabilities.shape[1]).tolist(),
        label_agreement=None if labels is None else (top == labels.cpu()).float().mean().item() * 100,
    )
