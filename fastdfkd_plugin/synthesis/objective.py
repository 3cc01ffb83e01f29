"""The inversion loss shared by FastDFKD and DeepInversion.

``L = w_bn·L_bn + w_oh·CE(teacher(x), y) + w_adv·L_adv`` on the augmented,
normalised batch. ``L_bn`` compares each BatchNorm layer's input statistics with
its running statistics; with BN momentum the comparison uses a blend of the current
batch and an exponential average of earlier batches, so the *population* of
synthesised batches matches the teacher even when one few-step batch does not.
Terms whose weight is zero are not computed at all.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..teacher import OutputTransform, Teacher, frozen, logits_of

BatchStatistics = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class LossWeights:
    """Weights of the three inversion terms (the paper's CIFAR settings by default)."""

    bn: float = 10.0
    oh: float = 0.5
    adv: float = 1.0


class ChannelStatistics(torch.autograd.Function):
    """Per-channel mean and biased variance of an N×C×… tensor (at least float32), with a one-pass backward.

    Same values as ``x.mean(dims), x.var(dims, unbiased=False)``, from two plain sums
    (E[x²] − E[x]²): on CPU ``var`` over the batch and spatial axes costs more than the
    convolution it follows, and its autograd backward several passes more. This runs
    on every teacher BatchNorm layer at every synthesis step.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        dims = [0, *range(2, x.dim())]
        count = x.numel() // x.shape[1]
        dtype = torch.promote_types(x.dtype, torch.float32)  # bf16 under autocast is summed in float32
        mean = x.sum(dims, dtype=dtype) / count
        var = ((x * x).sum(dims, dtype=dtype) / count - mean * mean).clamp_min(0)
        ctx.save_for_backward(x, mean)
        return mean, var

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_var: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x, mean = ctx.saved_tensors
        count = x.numel() // x.shape[1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        scale = 2 * grad_var / count  # d var / dx = 2 (x − mean) / count
        shift = grad_mean / count - scale * mean
        return torch.addcmul(shift.view(shape), x.to(scale.dtype), scale.view(shape)).to(x.dtype)


class BatchNormMatcher:
    """Forward hook on one BatchNorm layer; holds its momentum average between batches."""

    def __init__(self, layer: nn.modules.batchnorm._BatchNorm, momentum: float) -> None:
        self.layer = layer
        self.momentum = momentum
        self.average: tuple[torch.Tensor, torch.Tensor] | None = None
        self.current: tuple[torch.Tensor, torch.Tensor] | None = None
        self.loss: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        mean, var = ChannelStatistics.apply(inputs[0])
        self.current = (mean.detach(), var.detach())
        if self.average is not None and self.momentum > 0:
            mean = (1 - self.momentum) * mean + self.momentum * self.average[0]
            var = (1 - self.momentum) * var + self.momentum * self.average[1]
        self.loss = torch.norm(mean - module.running_mean, 2) + torch.norm(var - module.running_var, 2)

    def update_average(self, stats: tuple[torch.Tensor, torch.Tensor]) -> None:
        if self.average is None:
            self.average = stats
        else:
            m = self.momentum
            self.average = (m * self.average[0] + (1 - m) * stats[0], m * self.average[1] + (1 - m) * stats[1])


class InversionObjective:
    """Computes the inversion loss of pixel batches against a frozen teacher."""

    def __init__(
        self,
        teacher: Teacher,
        rng: torch.Generator,
        weights: LossWeights | None = None,
        bn_momentum: float = 0.9,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.teacher = teacher
        self.rng = rng
        self.weights = weights or LossWeights()
        self.augment = augment
        self.autocast_dtype = autocast_dtype
        self.matchers = [BatchNormMatcher(layer, bn_momentum) for layer in teacher.batchnorm_layers()]
        self.student: nn.Module | None = None
        self.student_output_transform: OutputTransform | None = None

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Freeze teacher (and student) and hook the BatchNorm layers, only while synthesising."""
        handles = [m.layer.register_forward_hook(m) for m in self.matchers] if self.weights.bn else []
        try:
            with self.teacher.frozen(), (frozen(self.student) if self.student is not None else contextlib.nullcontext()):
                yield
        finally:
            for handle in handles:
                handle.remove()

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The mixed-precision context teacher and generator forwards run in (none unless ``autocast_dtype`` is set)."""
        return torch.autocast(device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None)

    def __call__(self, pixels: torch.Tensor, labels: torch.Tensor, adversarial: bool = True) -> torch.Tensor:
        """The weighted loss of one pixel batch; ``adversarial`` False switches ``L_adv`` off (warm-up)."""
        pixels = self.augment(pixels, self.rng) if self.augment else pixels
        inputs = self.teacher.space.normalize(pixels)
        with self.autocast(inputs.device):
            logits = self.teacher.logits(inputs).float()
        terms: dict[str, torch.Tensor] = {}
        if self.weights.bn:
            terms["bn"] = sum(m.loss for m in self.matchers)
        if self.weights.oh:
            terms["oh"] = F.cross_entropy(logits, labels)
        if self.weights.adv and adversarial and self.student is not None:
            with self.autocast(inputs.device):
                student_logits = logits_of(self.student(inputs), self.student_output_transform).float()
            agree = (logits.argmax(1) == student_logits.argmax(1)).float()
            kl = F.kl_div(F.log_softmax(student_logits, 1), F.log_softmax(logits, 1), reduction="none", log_target=True).sum(1)
            terms["adv"] = -(agree * kl).mean()
        return sum((getattr(self.weights, name) * value for name, value in terms.items()), torch.zeros((), device=pixels.device))

    def batch_statistics(self) -> BatchStatistics:
        """The BatchNorm input statistics of the last evaluated batch."""
        return [m.current for m in self.matchers]

    def update_momentum(self, stats: BatchStatistics) -> None:
        """Fold a handed-out batch's statistics into the momentum averages."""
        for matcher, layer_stats in zip(self.matchers, stats):
            if layer_stats is not None:
                matcher.update_average(layer_stats)

    def momentum_state(self) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        return [m.average for m in self.matchers]

    def load_momentum_state(self, state: list[tuple[torch.Tensor, torch.Tensor] | None]) -> None:
        for matcher, average in zip(self.matchers, state):
            matcher.average = average
