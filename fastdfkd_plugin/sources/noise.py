"""The ``gaussian`` and ``uniform`` noise sources: what toolkits fall back to, the floor of every benchmark."""

from __future__ import annotations

from typing import Any

import torch

from ..teacher.teacher import Teacher
from .base import DataSource, SourceOption


class GaussianSource(DataSource):
    """Gaussian noise N(0, 1) in the model's normalised input space (torch.randn, as toolkits do).

    Clipped to the valid pixel range by default; ``clip=False`` reproduces the
    unclipped noise that compression scripts commonly feed.
    """

    name = "gaussian"
    options = (SourceOption(("--no-clip",), "clip", "unclipped noise, as many compression scripts feed it (default: "
                                                    "clipped to the valid pixel range)", const=False),)

    def __init__(self, teacher: Teacher, *, clip: bool = True, **common: Any) -> None:
        super().__init__(teacher, **common)
        self.clip = clip

    def synthesize_pixels(self, labels: torch.Tensor) -> torch.Tensor:
        inputs = torch.randn((len(labels), *self.input_shape), generator=self.rng, device=self.rng.device).to(self.device)
        return self.space.denormalize(self.space.clamp(inputs) if self.clip else inputs)

    def settings(self) -> dict[str, Any]:
        return {"clip": self.clip}


class UniformSource(DataSource):
    """Uniformly random pixels in [0, 1], normalised like real images."""

    name = "uniform"

    def synthesize_pixels(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.rand((len(labels), *self.input_shape), generator=self.rng, device=self.rng.device).to(self.device)

