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

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def default_shift(height: int) -> int:
    """The largest shift: an eighth of the side (4 px at 32 px, the usual CIFAR padding)."""
    return max(1, height // 8)


@dataclass(frozen=True)
class CropFlip:
    """:func:`crop_flip` with its settings, split into drawing the random shifts and flips and applying them.

    A compiled synthesis step draws eagerly, before the traced part: Dynamo cannot trace
    a ``torch.Generator``, and the stream is consumed exactly as :func:`crop_flip` does.
    """

    padding: int | None = None
    flip: bool = True

    def draw(self, count: int, height: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(shifts, count×2; mirror signs ±1, count) for ``count`` images of side ``height``, on ``rng``'s device."""
        padding = default_shift(height) if self.padding is None else self.padding
        shifts = torch.randint(-padding, padding + 1, (count, 2), generator=rng, device=rng.device)
        flips = torch.randint(0, 2, (count,), generator=rng, device=rng.device)
        return shifts, flips * 2 - 1 if self.flip else torch.ones_like(flips)

    def apply(self, images: torch.Tensor, draws: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Shift and mirror ``images`` as :meth:`draw` drew."""
        n, _, height, width = images.shape
        shifts, flips = (t.to(images.device, images.dtype) for t in draws)
        theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
        theta[:, 0, 0] = flips
        theta[:, 1, 1] = 1
        theta[:, 0, 2] = shifts[:, 0] * 2 / width
        theta[:, 1, 2] = shifts[:, 1] * 2 / height
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    def __call__(self, images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.draw(len(images), images.shape[2], rng))


def crop_flip(images: torch.Tensor, rng: torch.Generator, padding: int | None = None, flip: bool = True) -> torch.Tensor:
    """Shift each image by up to ``padding`` pixels (zeros fill in) and, with ``flip``, mirror half of them."""
    return CropFlip(padding, flip)(images, rng)
