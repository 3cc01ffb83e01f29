"""Training the benchmarks' own teachers on the shared CIFAR-10 train split, cached outside the repository.

The shared teachers are 32-px BatchNorm ResNets only; the quality benchmarks also need
a trained network of the kinds users bring (a 64-px MobileNet, a small ViT). Each is
trained once on the whole ``train.npz`` (random crop with padding of 1/8 of the side,
flips, label smoothing 0.1, one-cycle learning rate) and its weights go to the
benchmark cache (``$FASTDFKD_BENCHMARK_CACHE``, default ``~/.cache/fastdfkd-benchmarks``).
What differs per teacher is a :class:`Recipe`; :mod:`.teachers` holds the recipes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fastdfkd_plugin import atomic_path, load_weights

from .data import MEAN, STD, resize

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


@dataclass(frozen=True)
class Recipe:
    """How one teacher is trained: its cache name, architecture, optimizer, peak learning rate and input size."""

    name: str
    build: Callable[[], nn.Module]
    optimizer: OptimizerFactory
    max_lr: float
    size: int = 32


def cache_path(name: str, epochs: int) -> Path:
    folder = Path(os.environ.get("FASTDFKD_BENCHMARK_CACHE", Path.home() / ".cache" / "fastdfkd-benchmarks"))
    return folder / f"{name}-{epochs}ep.pt"


def train(model: nn.Module, recipe: Recipe, epochs: int, data_dir: Path, *, batch_size: int = 128, seed: int = 0) -> nn.Module:
    """Train ``model`` on ``train.npz`` resized to ``recipe.size`` px (bilinear) with crop-and-flip augmentation."""
    torch.manual_seed(seed)
    with np.load(data_dir / "cifar10" / "train.npz") as data:
        pixels = torch.from_numpy(data["x"]).permute(0, 3, 1, 2).contiguous()  # uint8, 32 px; resized per batch
        labels = torch.from_numpy(data["y"])
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    size = recipe.size
    steps, pad = epochs * (len(labels) // batch_size), size // 8
    opt = recipe.optimizer(model)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.max_lr, total_steps=steps, pct_start=0.2)
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc=f"training {recipe.name}", unit="step")
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


def trained_model(recipe: Recipe, epochs: int, data_dir: Path) -> nn.Module:
    """The model trained for ``epochs`` from the cache; trained by :func:`train` and cached first if missing."""
    path, model = cache_path(recipe.name, epochs), recipe.build()
    if path.exists():
        load_weights(model, path)
        return model.eval()
    started = time.perf_counter()
    trained = train(model, recipe, epochs, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.save(trained.state_dict(), temporary)
    print(f"trained {recipe.name} in {time.perf_counter() - started:.0f} s; cached at {path}", flush=True)
    return trained
