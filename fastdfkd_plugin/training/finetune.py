"""A data-free ``train_loader`` for the fine-tuning loop a script already has.

A pruning or compression script usually ends with ``train_model(model, train_loader, ...)``:
cross-entropy on real ``(images, labels)``. Without the data, swap the loader and the loss:

    train_loader = kd_loader(get_source("fastdfkd", teacher), batch_size=128, steps=len(old_loader), student=model)
    for inputs, teacher_logits in train_loader:          # was: for images, labels in train_loader
        loss = kd_loss(model(inputs), teacher_logits)     # was: F.cross_entropy(model(images), labels)

Each batch is drawn from a bank of synthetic images that a fresh synthetic batch joins
every ``steps_per_batch`` draws (crop+flipped, with the teacher's logits on exactly those
inputs), the data side of the loop that :func:`~fastdfkd_plugin.adapters.torch_pruning.recover`
and ``fastdfkd distill`` run. With ``student=``, the ``fastdfkd`` source aims its adversarial
term at the model being trained. Cross-entropy on a fixed synthetic set is a poor
replacement: see docs/torch_pruning.md for the measured gap.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import torch
from torch import nn

from ..sources.base import DataSource, check_positive
from ..teacher.teacher import OutputTransform
from .distillation import KDBatches, kd_loss

__all__ = ["KDLoader", "kd_loader", "kd_loss"]


class KDLoader:
    """An iterable of ``(inputs, teacher_logits)`` batches, ``steps`` per pass (endless when ``None``).

    Every pass continues the same bank and random streams, so each epoch sees new
    synthetic images, as each epoch over a real loader sees new augmentations.
    """

    def __init__(self, source: DataSource, batch_size: int, steps: int | None, steps_per_batch: int,
                 bank_size: int, synthesis_batch_size: int, student: nn.Module | None,
                 student_output_transform: OutputTransform | None, seed: int) -> None:
        for name, value in (("batch_size", batch_size), ("steps_per_batch", steps_per_batch), ("bank_size", bank_size),
                            ("synthesis_batch_size", synthesis_batch_size)):
            check_positive(name, value)
        if steps is not None:
            check_positive("steps (or None: endless)", steps)
        self.source, self.steps, self.steps_per_batch = source, steps, steps_per_batch
        self.student, self.student_output_transform = student, student_output_transform
        rng = torch.Generator(device=source.device).manual_seed(seed)
        self.data = KDBatches(source.teacher, source, batch_size, synthesis_batch_size, bank_size, rng)
        self.drawn = 0

    def __len__(self) -> int:
        """Batches per pass, like a ``DataLoader``'s ``len``."""
        if self.steps is None:
            raise TypeError("an endless kd_loader has no length; give steps= to use it where len() is needed")
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.source.set_student(self.student, self.student_output_transform)
        try:
            with self.source.teacher.frozen():  # once per pass, as the Distiller does, not once per batch
                for _ in range(self.steps) if self.steps is not None else itertools.count():
                    if self.drawn % self.steps_per_batch == 0:
                        self.data.refill()
                    self.drawn += 1
                    yield self.data.draw()
        finally:
            self.source.set_student(None)


def kd_loader(
    source: DataSource,
    batch_size: int = 128,
    steps: int | None = None,
    *,
    steps_per_batch: int = 25,
    bank_size: int = 8192,
    synthesis_batch_size: int = 64,
    student: nn.Module | None = None,
    student_output_transform: OutputTransform | None = None,
    seed: int = 0,
) -> KDLoader:
    """A data-free ``train_loader`` of ``(inputs, teacher_logits)`` batches; train on them with :func:`kd_loss`.

    The defaults are ``fastdfkd distill``'s CPU defaults: batches of 128 drawn from a
    bank of up to 8,192 images, a fresh synthetic batch of 64 every 25 draws. ``steps``
    is the number of batches per pass (``len(loader)``); ``None`` makes it endless.
    ``student``: the model being trained, for the source's adversarial term.
    """
    return KDLoader(source, batch_size, steps, steps_per_batch, bank_size, synthesis_batch_size, student,
                    student_output_transform, seed)
