"""Training the benchmarks' own teachers on the shared CIFAR-10 train split, cached outside the repository.

The shared teachers are 32-px BatchNorm ResNets only; the quality benchmarks also need
a trained network of the kinds users bring (a 64-px MobileNet, a small ViT). Each is
trained once on the whole ``train.npz`` (random crop with padding of 1/8 of the side,
flips, label smoothing 0.1, one-cycle learning rate) and its weights go to the
benchmark cache (``$FASTDFKD_BENCHMARK_CACHE``, default ``~/.cache/fastdfkd-benchmarks``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fastdfkd_plugin.io import atomic_path
from fastdfkd_plugin.loading import load_weights

from .cifar import MEAN, STD, accuracy, benchmark_parser, default_data_dir, load_images

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


def cache_path(name: str, epochs: int) -> Path:
    folder = Path(os.environ.get("FASTDFKD_BENCHMARK_CACHE", Path.home() / ".cache" / "fastdfkd-benchmarks"))
    return folder / f"{name}-{epochs}ep.pt"


def train(
    model: nn.Module, epochs: int, data_dir: Path, optimizer: OptimizerFactory, max_lr: float, *,
    size: int = 32, batch_size: int = 128, seed: int = 0, desc: str = "training",
) -> nn.Module:
    """Train ``model`` on ``train.npz`` resized to ``size`` px (bilinear) with crop-and-flip augmentation."""
    torch.manual_seed(seed)
    with np.load(data_dir / "cifar10" / "train.npz") as data:
        pixels = torch.from_numpy(data["x"]).permute(0, 3, 1, 2).contiguous()  # uint8, 32 px; resized per batch
        labels = torch.from_numpy(data["y"])
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    steps, pad = epochs * (len(labels) // batch_size), size // 8
    opt = optimizer(model)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=0.2)
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc=desc, unit="step")
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for index in order[: steps // epochs * batch_size].split(batch_size):
            x = resize((pixels[index].float() / 255 - mean) / std, size)
            x = F.pad(x, (pad, pad, pad, pad))
            dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
            x = x[:, :, dy : dy + size, dx : dx + size]
            if torch.rand((), generator=generator) < 0.5:
                x = x.flip(3)
            loss = F.cross_entropy(model(x), labels[index], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """CIFAR's 32-px images at ``size`` px (bilinear); unchanged at 32."""
    return images if images.shape[-1] == size else F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def cached_teacher(
    name: str, build: Callable[[], nn.Module], epochs: int, data_dir: Path | None,
    fit: Callable[[nn.Module, int, Path], nn.Module],
) -> nn.Module:
    """The trained model from the cache; trained with ``fit(model, epochs, data_dir)`` and cached first if missing."""
    path, model = cache_path(name, epochs), build()
    if path.exists():
        load_weights(model, path)
        return model.eval()
    started = time.perf_counter()
    trained = fit(model, epochs, data_dir or default_data_dir())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(trained.state_dict(), tmp)
    print(f"trained {name} in {time.perf_counter() - started:.0f} s; cached at {path}", flush=True)
    return trained


def accuracy_command(description: str | None, name: str, load: Callable[[int, Path | None], nn.Module], size: int = 32) -> None:
    """``python -m benchmarks.<teacher> [--epochs N]``: train (once) or load, then print the accuracy on ``test_a``."""
    parser = benchmark_parser(description)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    model = load(args.epochs, args.data_dir)
    x, y = load_images("test_a", args.data_dir)
    print(f"{name} ({args.epochs} epochs): {accuracy(model, resize(x, size), y):.2f} % on test_a", flush=True)
