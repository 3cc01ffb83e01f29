"""The KD settings (:class:`DistillConfig`): a module of their own, so that what plans a run (memory_plan.py)
and what runs it (distillation.py) both read them without reading each other."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import FastDFKDError


@dataclass
class DistillConfig:
    """KD settings. Defaults are the paper's CIFAR recipe: one batch of 256 per 400 KD steps at batch 256."""

    steps: int = 400
    batch_size: int = 256
    synthesis_batch_size: int | None = None  # images per new batch; None = batch_size
    steps_per_batch: int = 400
    bank_size: int = 50_000
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    temperature: float = 20.0
    seed: int = 0
    seconds: float | None = None  # a time budget: stop there, cosine schedule over time instead of steps

    def learning_rate(self, progress: float) -> float:
        """Cosine from ``lr`` to 0 over ``progress`` in [0, 1] (steps done or share of the time budget)."""
        return self.lr * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps_per_batch", "bank_size"):
            if getattr(self, name) <= 0:
                raise FastDFKDError(f"{name} must be positive, got {getattr(self, name)}")
        if self.steps < 0:
            raise FastDFKDError(f"steps must be 0 or more, got {self.steps}")
        for name in ("lr", "temperature"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise FastDFKDError(f"{name} must be a positive finite number, got {getattr(self, name)}")
