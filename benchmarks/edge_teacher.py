"""A real mobile teacher above 32 px: MobileNetV1 α 0.5 trained on CIFAR-10 upsampled to 64×64.

    python -m benchmarks.edge_teacher [--epochs 10]   # trains once, then prints the cached model's accuracy

The shared teachers are all 32-px ResNets; this gives the quality benchmarks a
trained depthwise-separable network at a larger input, as users' edge models are.
SGD (Nesterov, weight decay 5e-4, one-cycle to lr 0.2) on the whole ``train.npz``
upsampled ×2; cached in the benchmark cache (see benchmarks.common.training; the recipe:
``mobilenet_v1_050_64`` in benchmarks.common.teachers).
"""

from __future__ import annotations

from .common.cli import train_teacher_main


def main(argv: list[str] | None = None) -> None:
    train_teacher_main("mobilenet_v1_050_64", __doc__, argv)


if __name__ == "__main__":
    main()
