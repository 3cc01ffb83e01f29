"""The ``deepinversion`` source: per-batch pixel optimisation (Yin et al., CVPR 2020), the slow reference."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import FastDFKDError
from ..hooks.argtypes import positive
from ..teacher.teacher import Teacher
from .base import NonFiniteBatch, SourceOption
from .inverting import InvertingSource


class DeepInversionSource(InvertingSource):
    """DeepInversion: optimise the pixels of every batch from noise (same prior + CE loss, thousands of steps).

    Pixels start as N(0, 1) in normalised space and are clipped to the valid pixel
    range after every step, so its batches are usable as calibration data.
    """

    name = "deepinversion"
    options = (
        SourceOption(("--synthesis-steps", "--steps"), "steps", "optimisation steps per batch (default 2000)", type=positive),
        *InvertingSource.options,
    )

    def __init__(self, teacher: Teacher, *, steps: int = 2000, lr: float = 0.1, **common: Any) -> None:
        """``common``: the inversion options (``loss_weights``, ``bn_momentum`` (default 0), ``flip``, ``prior``,
        ``shift``) and every source's."""
        super().__init__(teacher, **common)
        if steps < 1:
            raise FastDFKDError(f"steps must be ≥ 1, got {steps}")
        self.steps, self.lr = steps, lr

    def synthesize_pixels(self, labels: torch.Tensor) -> torch.Tensor:
        shape = (len(labels), *self.input_shape)
        inputs = torch.randn(shape, generator=self.rng, device=self.rng.device).to(self.device)
        inputs = self.space.clamp(inputs).requires_grad_()
        optimizer = torch.optim.Adam([inputs], lr=self.lr, betas=(0.5, 0.99))
        best_loss, best, best_stats = float("inf"), inputs.detach().clone(), None
        with self.objective.attached():
            for _ in range(self.steps):
                loss = self.objective(self.space.denormalize(inputs), labels)
                value = loss.item()  # the one host sync per step
                if not math.isfinite(value):
                    raise NonFiniteBatch(f"inversion loss became {value}")
                if value < best_loss:
                    best_loss, best, best_stats = value, inputs.detach().clone(), self.objective.batch_statistics()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    inputs.copy_(self.space.clamp(inputs))
        if best_stats is not None:
            self.objective.update_momentum(best_stats)
        return self.space.denormalize(best).clamp(0, 1)

    def settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "lr": self.lr, **super().settings()}
