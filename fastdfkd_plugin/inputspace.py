"""The model's input space: pixels in [0, 1], normalised by a per-channel mean and std.

Synthesizers work on pixels (so the valid range is easy to guarantee) and hand out
normalised tensors, which is what the model and every toolkit expect.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .errors import FastDFKDError


class InputSpace:
    """Converts between pixels in [0, 1] and the model's normalised inputs."""

    def __init__(
        self,
        channels: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        mean = [0.0] * channels if mean is None else [float(v) for v in mean]
        std = [1.0] * channels if std is None else [float(v) for v in std]
        for label, values in (("mean", mean), ("std", std)):
            if len(values) != channels:
                raise FastDFKDError(f"--{label} has {len(values)} values but the input has {channels} channels; give one per channel")
        if not all(math.isfinite(v) for v in mean):
            raise FastDFKDError(f"--mean must be finite for every channel, got {mean}")
        if not all(math.isfinite(v) and v > 0 for v in std):
            raise FastDFKDError(f"--std must be positive and finite for every channel, got {std}")
        self.mean_values, self.std_values = mean, std
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * self.std + self.mean

    def clamp(self, inputs: torch.Tensor) -> torch.Tensor:
        """Clip normalised inputs to the image of [0, 1]: range outliers ruin calibration."""
        return torch.maximum(torch.minimum(inputs, self.normalize(torch.ones_like(self.mean))), self.normalize(torch.zeros_like(self.mean)))
