"""A real transformer teacher: the ~1 M-parameter ViT of examples/cifar_vit.py trained on CIFAR-10.

    python -m benchmarks.vit_teacher [--epochs 10]   # trains once (69 min on one CPU core), then prints its accuracy

No BatchNorm anywhere, so the benchmarks of BN-free synthesis measure on it
(``benchmarks.bn_free``, and ``--teacher vit`` of ``benchmarks.distillation`` and
``benchmarks.pruning``). AdamW (lr 1e-3, weight decay 0.05), batch 128, on the whole ``train.npz``;
cached in the benchmark cache, never in the repository (the recipe: ``benchmarks.common.teachers``).
"""

from __future__ import annotations

from .common.cli import train_teacher_main


def main(argv: list[str] | None = None) -> None:
    train_teacher_main("vit", __doc__, argv)


if __name__ == "__main__":
    main()
