"""Differentiable per-sample random crop (zero padding) and horizontal flip.

Gradients flow through the augmentation into the generator, so the synthesised
images must explain the teacher's statistics under the same jitter real training
images saw. Implemented as one batched ``grid_sample`` with integer shifts. A teacher
trained without flips (digits, text: a mirrored 3 is no 3) is inverted with
``flip=False``, one trained on centred images without translation with ``shift=0``
(it cannot be confident about a class under every shift, so inverting it with shifts
gives unconfident, class-imbalanced images); the random stream is the same either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def default_shift(height: int) -> int:
    """The largest shift: an eighth of the side (4 px at 32 px, the usual CIFAR padding)."""
    return max(1, height // 8)


def crop_flip(images: torch.Tensor, rng: torch.Generator, padding: int | None = None, flip: bool = True) -> torch.Tensor:
    """Shift each image by up to ``padding`` pixels (zeros fill in) and, with ``flip``, mirror half of them."""
    n, _, height, width = images.shape
    padding = default_shift(height) if padding is None else padding
    device = images.device
    shifts = torch.randint(-padding, padding + 1, (n, 2), generator=rng, device=rng.device).to(device, images.dtype)
    flips = torch.randint(0, 2, (n,), generator=rng, device=rng.device).to(device, images.dtype) * 2 - 1
    if not flip:
        flips = torch.ones_like(flips)
    theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0] = flips
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = shifts[:, 0] * 2 / width
    theta[:, 1, 2] = shifts[:, 1] * 2 / height
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
