"""The real CIFAR-10 images in ../shared/data (never copied into this repository), and scoring a model on them.

Every benchmark reads its images here, so that where the data lives
(``$FASTDFKD_DATA_DIR``), how images are normalised (the shared teachers' MEAN/STD),
how a calibration subset and a held-out split are drawn and how accuracy is counted are
decided once: two benchmarks reporting the same column measure it the same way.
Nothing is read at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
INPUT_SHAPE = (3, 32, 32)
HELDOUT = 2000  # train_10k images kept out of calibration, for choosing settings without looking at test_a


def default_data_dir() -> Path:
    """``$FASTDFKD_DATA_DIR`` or ../shared/data beside the repository."""
    return Path(os.environ.get("FASTDFKD_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))


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


def evaluation_split(split: str, samples: int, data_dir: Path, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(real calibration inputs, eval inputs, eval labels): ``samples`` seeded ``train_10k`` images, and
    ``test_a`` or (``heldout``) the next :data:`HELDOUT` of the same permutation, never used for calibration."""
    all_x, all_y = load_images("train_10k", data_dir, limit=samples + HELDOUT, seed=seed)
    eval_x, eval_y = load_images("test_a", data_dir) if split == "test_a" else (all_x[samples:], all_y[samples:])
    return all_x[:samples].numpy(), eval_x.numpy(), eval_y.numpy()


SETS_BEFORE_HELDOUT = 3  # seeds 0-2 draw their sets before the held-out block: the layout every committed result used


def seeded_real_sets(split: str, samples: int, seeds: list[int], data_dir: Path, seed: int
                     ) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """({calibration seed: its ``samples`` real ``train_10k`` images}, eval inputs, eval labels).

    A seed's set is its own slot of one seeded permutation, so it is the same whichever other
    seeds run, and the held-out :data:`HELDOUT` images (``split="heldout"``) stay the same too:
    ``--seeds 3,4,5`` extends a ``--seeds 0,1,2`` run instead of repeating its real images.
    """
    if any(s < 0 for s in seeds):
        raise SystemExit(f"calibration seeds must be 0 or more, got {seeds}")
    all_x, all_y = load_images("train_10k", data_dir, limit=10_000, seed=seed)  # all of it, in one seeded order

    def start(s: int) -> int:
        return s * samples + (HELDOUT if s >= SETS_BEFORE_HELDOUT else 0)

    if start(max(seeds)) + samples > len(all_y):
        raise SystemExit(f"train_10k has no room for {samples} images per seed up to seed {max(seeds)} beside "
                         f"the {HELDOUT} held-out images; use fewer samples or lower seeds")
    sets = {s: all_x[start(s):start(s) + samples].numpy() for s in seeds}
    heldout = slice(SETS_BEFORE_HELDOUT * samples, SETS_BEFORE_HELDOUT * samples + HELDOUT)
    eval_x, eval_y = load_images("test_a", data_dir) if split == "test_a" else (all_x[heldout], all_y[heldout])
    return sets, eval_x.numpy(), eval_y.numpy()


def teacher_splits(size: int, samples: int, seeds: list[int], data_dir: Path, seed: int
                   ) -> tuple[dict[int, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """({calibration seed: its real set}, {"heldout" | "test_a": (inputs, labels)}), every image at ``size`` px.

    The calibration benchmarks' data for one teacher: :func:`seeded_real_sets` on the held-out
    split, and ``test_a`` as the report.
    """
    real, heldout_x, heldout_y = seeded_real_sets("heldout", samples, seeds, data_dir, seed)
    test_x, test_y = load_images("test_a", data_dir)
    sets = {s: resize(torch.from_numpy(x), size).numpy() for s, x in real.items()}
    return sets, {"heldout": (resize(torch.from_numpy(heldout_x), size).numpy(), heldout_y),
                  "test_a": (resize(test_x, size).numpy(), test_y.numpy())}


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """CIFAR's 32-px images at ``size`` px (bilinear); unchanged at 32."""
    return images if images.shape[-1] == size else F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def endless(images: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Seeded random batches of ``images``, epoch after epoch: real data as an endless stream."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from (images[index] for index in torch.randperm(len(images), generator=generator).split(batch_size))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy (%) of ``model`` in eval mode (a PT2E-quantized graph module is evaluated as it is)."""
    if not isinstance(model, torch.fx.GraphModule):  # exported graphs refuse .eval()
        model.eval()
    correct = sum(int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum()) for i in range(0, len(y), batch_size))
    return 100.0 * correct / len(y)
