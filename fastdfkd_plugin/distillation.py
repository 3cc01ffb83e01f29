"""Knowledge distillation from a stream of input batches (the paper's Algorithm 1, minimal).

Every ``steps_per_batch`` KD steps a new batch joins a bounded in-memory bank
(oldest images evicted); each KD step draws a random minibatch from the bank,
applies crop+flip, and minimises ``KL(p_T^τ ‖ p_S^τ)·τ²`` with SGD and a cosine
schedule. The same loop serves data-free distillation and pruning recovery; it
does not care whether the batches are synthetic or real.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .synthesis.augment import crop_flip
from .teacher import frozen


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(p_T^τ ‖ p_S^τ)·τ²``, averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


class MemoryBank:
    """A bounded FIFO store of input images that KD steps sample from."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.images: torch.Tensor | None = None

    def add(self, images: torch.Tensor) -> None:
        images = images.detach()
        self.images = images if self.images is None else torch.cat([self.images, images])
        self.images = self.images[-self.capacity :]

    def sample(self, batch_size: int, rng: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, len(self.images), (batch_size,), generator=rng, device=rng.device)
        return self.images[index.to(self.images.device)]


@dataclass
class DistillConfig:
    """KD settings; defaults follow the paper's CIFAR recipe, scaled by the caller's step budget."""

    steps: int = 400
    batch_size: int = 256
    steps_per_batch: int = 400
    bank_size: int = 50_000
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    temperature: float = 20.0
    seed: int = 0


@dataclass
class DistillLog:
    """Per-step KD loss, for plots and reports."""

    losses: list[float] = field(default_factory=list)


def distill(
    teacher: nn.Module, student: nn.Module, batches: Iterator[torch.Tensor], config: DistillConfig, progress: bool = False
) -> DistillLog:
    """Train ``student`` to match ``teacher`` on inputs drawn from ``batches``; the teacher stays frozen."""
    device = next(student.parameters()).device
    rng = torch.Generator(device=device).manual_seed(config.seed)
    bank = MemoryBank(config.bank_size)
    optimizer = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    log = DistillLog()
    student.train()
    with frozen(teacher):
        for step in tqdm(range(config.steps), desc="distillation", unit="step", disable=not progress):
            if step % config.steps_per_batch == 0:
                bank.add(next(batches))
            inputs = crop_flip(bank.sample(config.batch_size, rng), rng)
            with torch.no_grad():
                target = teacher(inputs)
            loss = kd_loss(student(inputs), target, config.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            log.losses.append(loss.item())
    student.eval()
    return log
