"""A real transformer teacher: the ~1 M-parameter ViT of examples/cifar_vit.py trained on CIFAR-10.

    python -m benchmarks.vit_teacher [--epochs 10]   # trains once (69 min on one CPU core), then prints its accuracy

No BatchNorm anywhere, so the benchmarks of BN-free synthesis measure on it
(``benchmarks.bn_free``, and ``--teacher vit`` of ``benchmarks.distillation`` and
``benchmarks.pruning``). AdamW (lr 1e-3, weight decay 0.05), batch 128, on the whole ``train.npz``;
cached in the benchmark cache, never in the repository.
"""

from __future__ import annotations

from pathlib import Path

import torch

from examples.cifar_vit import CifarViT, vit_tiny

from .training import accuracy_command, cached_teacher, train

NAME = "vit_tiny"


def fit(model: torch.nn.Module, epochs: int, data_dir: Path) -> torch.nn.Module:
    adamw = lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05)  # noqa: E731
    return train(model, epochs, data_dir, adamw, max_lr=1e-3, desc=f"training {NAME}")


def load_vit_teacher(epochs: int = 10, data_dir: Path | None = None) -> CifarViT:
    """The trained ViT from the cache, training it first if it is not there."""
    return cached_teacher(NAME, vit_tiny, epochs, data_dir, fit)


def main() -> None:
    accuracy_command(__doc__, NAME, load_vit_teacher)


if __name__ == "__main__":
    main()
