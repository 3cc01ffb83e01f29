"""The inversion loss shared by FastDFKD and DeepInversion.

``L = w_prior·L_prior + w_oh·L_target(teacher(x), y) + w_adv·L_adv`` on the augmented,
normalised batch; the teacher's task (:mod:`fastdfkd_plugin.teacher.tasks`) says what the target
term and the adversarial divergence are for its kind of output (cross-entropy and
agreement-masked KL for class logits, per pixel for class maps, L1 for generic outputs). ``L_prior`` comes from the teacher's :mod:`prior <.priors>`: for a
BatchNorm teacher it compares each BN layer's input statistics with its running
statistics; with BN momentum the comparison uses a blend of the current batch and an
exponential average of earlier batches, so the *population* of synthesised batches
matches the teacher even when one few-step batch does not. Terms whose weight is
zero are not computed at all.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any, Iterator

import torch
from torch import nn

from ..teacher.tasks import map_outputs
from ..teacher.teacher import OutputTransform, Teacher, frozen, outputs_of
from .augment import CropFlip
from .priors import Prior, Statistics


@dataclass
class LossWeights:
    """Weights of the three inversion terms (the paper's CIFAR settings by default).

    ``prior`` ``None`` takes the prior's own default (10 for BatchNorm, as in the paper);
    ``oh`` ``None`` the task's (0.5 for classifiers, 0 for segmenters as in the paper's
    segmentation experiment, 0 for generic outputs, which have no target term).
    """

    prior: float | None = None
    oh: float | None = None
    adv: float = 1.0


class InversionObjective:
    """Computes the inversion loss of pixel batches against a frozen teacher, with ``prior``'s term."""

    def __init__(
        self,
        teacher: Teacher,
        prior: Prior,
        rng: torch.Generator,
        weights: LossWeights | None = None,
        augment: CropFlip | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.teacher = teacher
        self.rng = rng
        self.prior = prior
        weights = weights or LossWeights()
        self.weights = replace(weights, prior=self.prior.weight if weights.prior is None else weights.prior,
                               oh=teacher.task.default_target_weight if weights.oh is None else weights.oh)
        self.augment = augment
        self.autocast_dtype = autocast_dtype
        self.student: nn.Module | None = None
        self.student_output_transform: OutputTransform | None = None

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Freeze teacher (and student) and hook the prior's layers, only while synthesising."""
        handles = [layer.register_forward_hook(hook) for layer, hook in self.prior.hooks()] if self.weights.prior else []
        try:
            with self.teacher.frozen(), (frozen(self.student) if self.student is not None else contextlib.nullcontext()):
                yield
        finally:
            for handle in handles:
                handle.remove()

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The mixed-precision context teacher and generator forwards run in (none unless ``autocast_dtype`` is set)."""
        return torch.autocast(device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None)

    def __call__(self, pixels: torch.Tensor, targets: torch.Tensor, adversarial: bool = True) -> torch.Tensor:
        """The weighted loss of one pixel batch; ``adversarial`` False switches ``L_adv`` off (warm-up)."""
        return self.loss(pixels, targets, adversarial, self.draw(len(pixels)))

    def draw(self, count: int) -> Any:
        """The augmentation's random draws for ``count`` images, from the objective's stream (eager, outside a compiled step)."""
        return self.augment.draw(count, self.teacher.input_shape[1], self.rng) if self.augment else None

    def loss(self, pixels: torch.Tensor, targets: torch.Tensor, adversarial: bool, draws: Any) -> torch.Tensor:
        """:meth:`__call__` with the augmentation's ``draws`` given: all of it traceable by ``torch.compile``."""
        pixels = self.augment.apply(pixels, draws) if self.augment else pixels
        inputs = self.teacher.space.normalize(pixels)
        task = self.teacher.task
        with self.autocast(inputs.device):
            outputs = map_outputs(torch.Tensor.float, self.teacher.outputs(inputs))
        terms: dict[str, torch.Tensor] = {}
        if self.weights.prior:
            terms["prior"] = self.prior.loss(inputs)
        if self.weights.oh:
            terms["oh"] = task.target_loss(outputs, targets)
        if self.weights.adv and adversarial and self.student is not None:
            with self.autocast(inputs.device):
                student_outputs = map_outputs(torch.Tensor.float, outputs_of(self.student(inputs), self.student_output_transform))
            terms["adv"] = -task.divergence(student_outputs, outputs)
        return sum((getattr(self.weights, name) * value for name, value in terms.items()), torch.zeros((), device=pixels.device))

    def batch_statistics(self) -> Statistics:
        """The prior's statistics of the last evaluated batch (BatchNorm input statistics)."""
        return self.prior.batch_statistics()

    def update_momentum(self, stats: Statistics) -> None:
        """Fold a handed-out batch's statistics into the prior's population average."""
        self.prior.update_momentum(stats)

    def momentum_state(self) -> Statistics:
        return self.prior.momentum_state()

    def load_momentum_state(self, state: Statistics) -> None:
        self.prior.load_momentum_state(state)
