"""A real mobile teacher above 32 px: MobileNetV1 α 0.5 trained on CIFAR-10 upsampled to 64×64.

    python -m benchmarks.edge_teacher [--epochs 10]   # trains once, then prints the cached model's accuracy

The shared teachers are all 32-px ResNets; this gives the quality benchmarks a
trained depthwise-separable network at a larger input, as users' edge models are.
SGD (Nesterov, weight decay 5e-4, one-cycle to lr 0.2) on the whole ``train.npz``
upsampled ×2; cached in the benchmark cache (see benchmarks.training).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .edge_models import MobileNetV1
from .training import accuracy_command, cached_teacher, resize, train

SIZE = 64
INPUT_SHAPE = (3, SIZE, SIZE)
NAME = "mobilenet_v1_050_64"


def upsample(images: torch.Tensor) -> torch.Tensor:
    """CIFAR's 32-px images at the teacher's 64 px (bilinear)."""
    return resize(images, SIZE)


def fit(model: torch.nn.Module, epochs: int, data_dir: Path) -> torch.nn.Module:
    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)  # noqa: E731
    return train(model, epochs, data_dir, sgd, max_lr=0.2, size=SIZE, desc=f"training {NAME}")


def load_edge_teacher(epochs: int = 10, data_dir: Path | None = None) -> MobileNetV1:
    """The trained 64-px MobileNet from the cache, training it first if it is not there."""
    return cached_teacher(NAME, lambda: MobileNetV1(0.5, num_classes=10), epochs, data_dir, fit)


def main() -> None:
    accuracy_command(__doc__, NAME, load_edge_teacher, size=SIZE)


if __name__ == "__main__":
    main()
