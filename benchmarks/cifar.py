"""The real CIFAR-10 teachers and images in ../shared/data (never copied into this repository).

Architecture: examples/cifar_resnet.py, He et al.'s CIFAR ResNet with parameter-free
"option A" shortcuts (stride-2 subsampling plus channel zero-padding).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from examples.cifar_resnet import CifarResNet
from fastdfkd_plugin import DataSource, get_source
from fastdfkd_plugin.loading import load_weights

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
INPUT_SHAPE = (3, 32, 32)
TEACHER_FILES = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}


def benchmark_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: where the data is, the seed, the device."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="folder with cifar10/ and teachers/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    return parser


def cold_source(name: str, teacher: nn.Module, **options: Any) -> DataSource:
    """``get_source`` at the CIFAR normalisation, never from the warm-state cache.

    A benchmark times every ``fastdfkd`` set from cold (warm-up counted); a warm state cached
    by an earlier run or an earlier source in the same run would skip it.
    """
    if name == "fastdfkd":
        options = {"cache": False, **options}
    return get_source(name, teacher, INPUT_SHAPE, mean=MEAN, std=STD, **options)


def default_data_dir() -> Path:
    """``$FASTDFKD_DATA_DIR`` or ../shared/data beside the repository."""
    return Path(os.environ.get("FASTDFKD_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load_teacher(name: str, data_dir: Path | None = None) -> nn.Module:
    """A CIFAR-10 teacher by name: a shared ResNet from ``data_dir/teachers`` (weights_only load), or ``vit``.

    ``vit`` is the ViT of :mod:`benchmarks.vit_teacher`, trained once and cached.
    """
    if name == "vit":
        from .vit_teacher import load_vit_teacher  # imported here: it trains with this module's data loading

        return load_vit_teacher(data_dir=data_dir)
    model = CifarResNet(int(name.removeprefix("resnet")))
    load_weights(model, (data_dir or default_data_dir()) / "teachers" / TEACHER_FILES[name])
    return model.eval()


def load_images(
    split: str, data_dir: Path | None = None, limit: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised N×3×32×32 images and labels from ``cifar10/{split}.npz``.

    The files are sorted by class, so ``limit`` takes a seeded random subset.
    """
    with np.load((data_dir or default_data_dir()) / "cifar10" / f"{split}.npz") as data:
        x, y = data["x"], data["y"]
    if limit is not None:
        keep = np.random.default_rng(seed).permutation(len(y))[:limit]
        x, y = x[keep], y[keep]
    pixels = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1), torch.from_numpy(y)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy (%) of ``model`` in eval mode (a PT2E-quantized graph module is evaluated as it is)."""
    if not isinstance(model, torch.fx.GraphModule):  # exported graphs refuse .eval()
        model.eval()
    correct = sum(int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum()) for i in range(0, len(y), batch_size))
    return 100.0 * correct / len(y)


def endless(images: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Seeded random batches of ``images``, epoch after epoch: real data as an endless stream."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from (images[index] for index in torch.randperm(len(images), generator=generator).split(batch_size))
