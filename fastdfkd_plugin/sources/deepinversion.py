"""The ``deepinversion`` source: per-batch pixel optimisation (Yin et al., CVPR 2020), the slow reference."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from ..errors import FastDFKDError
from ..hookspecs import hookimpl
from ..synthesis.objective import LossWeights
from ..teacher import Teacher
from .base import DataSource, NonFiniteBatch


class DeepInversionSource(DataSource):
    """DeepInversion: optimise the pixels of every batch from noise (same prior + CE loss, thousands of steps).

    Pixels start as N(0, 1) in normalised space and are clipped to the valid pixel
    range after every step, so its batches are usable as calibration data.
    """

    name = "deepinversion"

    def __init__(
        self,
        teacher: Teacher | nn.Module,
        input_shape: tuple[int, int, int] | None = None,
        *,
        steps: int = 2000,
        lr: float = 0.1,
        loss_weights: LossWeights | None = None,
        bn_momentum: float = 0.0,
        flip: bool = True,
        prior: str = "auto",
        shift: int | None = None,
        **common: Any,
    ) -> None:
        super().__init__(teacher, input_shape, **common)
        if steps < 1:
            raise FastDFKDError(f"steps must be ≥ 1, got {steps}")
        self.steps, self.lr, self.bn_momentum, self.flip = steps, lr, bn_momentum, flip
        self.shift = self.pixel_shift(shift)
        self.objective = self.inversion_objective(loss_weights, bn_momentum, flip, prior, self.shift)

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
        w = self.objective.weights
        return {"steps": self.steps, "lr": self.lr, "bn_momentum": self.bn_momentum,
                "prior": self.objective.prior.name, "loss_weights": {"prior": w.prior, "oh": w.oh, "adv": w.adv},
                "flip": self.flip, "shift": self.shift}


@hookimpl
def fastdfkd_register_sources(register: Callable[[type[DataSource]], None]) -> None:
    register(DeepInversionSource)
