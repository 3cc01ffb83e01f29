"""The model's input space: pixels in [0, 1], normalised by a per-channel mean and std; labelled sets read into it.

Synthesizers work on pixels (so the valid range is easy to guarantee) and hand out
normalised tensors, which is what the model and every toolkit expect.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import FastDFKDError


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


def load_labelled(path: str | os.PathLike, space: InputSpace) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised inputs, labels) of a validation ``.npz``: ``inputs``/``labels`` already in the model's
    space, or the common ``x``/``y`` layout of uint8 images (N×H×W×C or N×C×H×W), normalised with ``space``."""
    path = Path(path)
    if not path.is_file():
        raise FastDFKDError(f"validation set {path} does not exist; check the path")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if name in ("inputs", "labels", "x", "y")}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise FastDFKDError(f"{path} is not a readable .npz ({exc}); save it with numpy.savez") from exc
    if {"inputs", "labels"} <= arrays.keys():
        return torch.as_tensor(arrays["inputs"]).float(), torch.as_tensor(arrays["labels"]).long()
    if {"x", "y"} <= arrays.keys() and arrays["x"].ndim == 4:
        pixels = torch.as_tensor(arrays["x"])
        channels = space.mean.shape[1]
        if pixels.shape[1] != channels and pixels.shape[-1] == channels:
            pixels = pixels.permute(0, 3, 1, 2)
        scale = 255.0 if arrays["x"].dtype == np.uint8 else 1.0
        return space.normalize(pixels.float().to(space.mean.device) / scale).cpu(), torch.as_tensor(arrays["y"]).long()
    raise FastDFKDError(f"{path} holds {sorted(arrays) or 'none of the expected arrays'}; give normalised `inputs` and "
                        "`labels`, or images `x` (uint8, N×H×W×C) and labels `y`")
