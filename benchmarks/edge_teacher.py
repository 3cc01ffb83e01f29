"""A real mobile teacher above 32 px: MobileNetV1 α 0.5 trained on CIFAR-10 upsampled to 64×64.

    python -m benchmarks.edge_teacher [--epochs 10]   # trains once, then prints the cached model's accuracy

The shared teachers are all 32-px ResNets; this gives the quality benchmarks a
trained depthwise-separable network at a larger input, as users' edge models are.
Trained on the whole ``train.npz`` (bilinear ×2, random crop with 8-px padding and
flips, SGD with one-cycle learning rate, label smoothing 0.1). The weights go to the
benchmark cache (``$FASTDFKD_BENCHMARK_CACHE``, default ``~/.cache/fastdfkd-benchmarks``),
never to the repository; later benchmarks load them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fastdfkd_plugin.io import atomic_path
from fastdfkd_plugin.loading import load_weights

from .cifar import MEAN, STD, accuracy, benchmark_parser, default_data_dir, load_images
from .edge_models import MobileNetV1

SIZE = 64
INPUT_SHAPE = (3, SIZE, SIZE)
NAME = "mobilenet_v1_050_64"


def cache_path(epochs: int) -> Path:
    folder = Path(os.environ.get("FASTDFKD_BENCHMARK_CACHE", Path.home() / ".cache" / "fastdfkd-benchmarks"))
    return folder / f"{NAME}-{epochs}ep.pt"


def upsample(images: torch.Tensor) -> torch.Tensor:
    """CIFAR's 32-px images at the teacher's 64 px (bilinear)."""
    return F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def train(epochs: int, data_dir: Path, batch_size: int = 128, seed: int = 0) -> MobileNetV1:
    torch.manual_seed(seed)
    with np.load(data_dir / "cifar10" / "train.npz") as data:
        pixels = torch.from_numpy(data["x"]).permute(0, 3, 1, 2).contiguous()  # uint8, 32 px; upsampled per batch
        labels = torch.from_numpy(data["y"])
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    model = MobileNetV1(0.5, num_classes=10)
    steps = epochs * (len(labels) // batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=steps, pct_start=0.2)
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc=f"training {NAME}", unit="step")
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for index in order[: steps // epochs * batch_size].split(batch_size):
            x = upsample((pixels[index].float() / 255 - mean) / std)
            x = F.pad(x, (8, 8, 8, 8))
            dx, dy = torch.randint(0, 17, (2,), generator=generator).tolist()
            x = x[:, :, dy : dy + SIZE, dx : dx + SIZE]
            if torch.rand((), generator=generator) < 0.5:
                x = x.flip(3)
            loss = F.cross_entropy(model(x), labels[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


def load_edge_teacher(epochs: int = 10, data_dir: Path | None = None) -> MobileNetV1:
    """The trained 64-px MobileNet from the cache, training it first if it is not there."""
    path = cache_path(epochs)
    model = MobileNetV1(0.5, num_classes=10)
    if path.exists():
        load_weights(model, path)
        return model.eval()
    started = time.perf_counter()
    trained = train(epochs, data_dir or default_data_dir())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(trained.state_dict(), tmp)
    print(f"trained {NAME} in {time.perf_counter() - started:.0f} s; cached at {path}", flush=True)
    return trained


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    model = load_edge_teacher(args.epochs, args.data_dir)
    x, y = load_images("test_a", args.data_dir)
    print(f"{NAME} ({args.epochs} epochs): {accuracy(model, upsample(x), y):.2f} % on test_a", flush=True)


if __name__ == "__main__":
    main()
