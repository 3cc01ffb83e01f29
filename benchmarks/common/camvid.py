"""The real CamVid road scenes in ../shared/data/camvid (never copied into this repository), and scoring a segmenter on them.

What :mod:`.data` is for CIFAR-10, for semantic segmentation: every CamVid benchmark
reads its images, normalises them and counts mean IoU here, so that two reports giving
the same column measure it the same way. Pixels labelled :data:`IGNORE_INDEX`
(unlabelled) count in neither losses nor scores. Nothing is read at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fastdfkd_plugin import Segmentation, Teacher

from .data import default_data_dir

CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian", "bicyclist")
IGNORE_INDEX = 11  # unlabelled
INPUT_SHAPE = (3, 180, 240)
# Per-channel mean and std of the RGB pixels (in [0, 1]) of camvid/train.npz, computed once from the whole file.
MEAN = (0.4123, 0.4256, 0.4331)
STD = (0.2993, 0.3035, 0.2996)
SEGMENTATION = Segmentation(torch.zeros(1, len(CLASSES), 1, 1))  # what the 11-class outputs mean, as a Teacher would learn it


def load_split(split: str, data_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised N×3×180×240 float images and N×180×240 long labels (0–10, :data:`IGNORE_INDEX`) of ``camvid/{split}.npz``."""
    with np.load((data_dir or default_data_dir()) / "camvid" / f"{split}.npz") as data:
        x, y = data["x"], data["y"]
    pixels = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1), torch.from_numpy(y).long()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    """Mean IoU (%) over the classes present in the truth or the prediction, and pixel accuracy (%), of ``model`` (put
    in eval mode) on normalised images ``x`` and labels ``y``, batch by batch on the model's own device: the
    package's own segmentation scores, so benchmarks and ``fastdfkd distill --eval-data`` count alike."""
    model.eval()
    device = next(model.parameters()).device
    pairs = ((model(xb.to(device)), yb) for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
    return SEGMENTATION.scores(pairs, IGNORE_INDEX)


def macs_per_image(model: nn.Module) -> int:
    """Multiply-adds of one forward pass on one 180×240 image, as the package counts a teacher's."""
    return Teacher(model, INPUT_SHAPE, device=None).macs_per_image
