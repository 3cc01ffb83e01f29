"""The FastDFKD generator G(z; θ), and the named architectures a source can pick.

Every architecture is the same network shape with a different channel schedule: a
linear projection of the latent vector to a small feature map (8–15 pixels wide),
one ×2 upsampling block (nearest, conv 3×3, BN, LeakyReLU 0.2) per doubling up to
the input size, a final conv to C channels and a sigmoid. Sizes that are not powers
of two are cropped at the end. The generator always runs in train mode: its
BatchNorm layers normalise each synthesised batch.

- ``paper``: the paper's CIFAR network (128 channels, 64 in the last stage; exactly
  the published one at 32×32), whatever the teacher.
- ``compact`` (the default): channels halve at each upsampling block, and the starting
  width is the largest whose forward costs at most a quarter of the teacher's own per
  image. Every step runs generator and teacher once each, so this keeps synthesis
  teacher-bound at any resolution, for a ResNet at 32 px as for a MobileNetV2 at 224.
  A teacher cheaper than the narrowest generator (MobileNetV1 α 0.25 at 96 px) gets
  that one and stays about half generator-bound.
- ``compact-subpixel``: ``compact`` whose last doubling is a convolution to 4·C channels
  at half resolution followed by a pixel shuffle, so nothing but the shuffle runs at full
  resolution. Cheaper where the teacher is small and the input large (MobileNetV1 α 0.25
  at 96 px, k = 5: 11.2× the teacher-bound floor against 17.9× for ``compact``,
  docs/benchmarks/resolution*.md), but its batches fit the teacher's BatchNorm
  statistics less well (ResNet-56: BN distance 224 against 166), so it is not the default.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..errors import FastDFKDError
from ..teacher.teacher import forward_macs

LATENT_DIM = 256
COMPACT_WIDTHS = (128, 96, 64, 48, 32, 24, 16)  # starting widths tried, widest first
COMPACT_MIN_CHANNELS = 8
COMPACT_COST_SHARE = 0.25  # generator forward MACs per image ≤ this × the teacher's


class Generator(nn.Module):
    """Latent vector to an image in [0, 1]: ``channels[0]`` projected channels, ``channels[i]`` after block i.

    With ``subpixel`` the last doubling is a convolution to 4·C channels at half
    resolution followed by a pixel shuffle (Shi et al., 2016) instead of an upsampled
    full-resolution block: no convolution, BatchNorm or activation runs at the full
    input size, where they cost the most.

    The activations run in place (same values and gradients): one full-size tensor less
    per block, which counts where the blocks run at 96 px and more.
    """

    def __init__(self, input_shape: tuple[int, int, int], channels: list[int], latent_dim: int = LATENT_DIM,
                 subpixel: bool = False) -> None:
        super().__init__()
        image_channels, height, width = input_shape
        stages = upsampling_stages(input_shape)
        subpixel = subpixel and stages > 0
        nearest = stages - subpixel
        if len(channels) < max(nearest, 1) + 1:
            raise FastDFKDError(f"a {height}×{width} generator needs at least {max(nearest, 1) + 1} channel counts, got {channels}")
        self.latent_dim = latent_dim
        self.channels = list(channels)
        self.output_hw = (height, width)
        self.init_hw = (math.ceil(height / 2**stages), math.ceil(width / 2**stages))
        self.project = nn.Linear(latent_dim, channels[0] * self.init_hw[0] * self.init_hw[1])
        layers: list[nn.Module] = [nn.BatchNorm2d(channels[0])]
        for block, (in_ch, out_ch) in enumerate(zip(channels, channels[1:])):
            if block < nearest:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2, inplace=True)]
        if subpixel:
            layers += [nn.Conv2d(channels[-1], 4 * image_channels, 3, padding=1), nn.PixelShuffle(2)]
        else:
            layers.append(nn.Conv2d(channels[-1], image_channels, 3, padding=1))
        self.body = nn.Sequential(*layers, nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = self.project(z).view(z.shape[0], self.channels[0], *self.init_hw)
        image = self.body(features)
        return image[:, :, : self.output_hw[0], : self.output_hw[1]]


def upsampling_stages(input_shape: tuple[int, int, int]) -> int:
    """One ×2 stage per doubling above 8 pixels on the shorter side."""
    return max(0, int(math.floor(math.log2(min(input_shape[1:]) / 8))))


def paper_generator(input_shape: tuple[int, int, int], teacher_macs: int, latent_dim: int = LATENT_DIM) -> Generator:
    """The paper's network: 128 channels in every stage but the last, which has 64 (2.3M parameters at 32×32)."""
    stages = max(upsampling_stages(input_shape), 1)
    return Generator(input_shape, [128] * stages + [64], latent_dim)


def compact_generator(input_shape: tuple[int, int, int], teacher_macs: int, latent_dim: int = LATENT_DIM,
                      subpixel: bool = False, cost_share: float = COMPACT_COST_SHARE) -> Generator:
    """Channels halving per block (≥ 8), from the widest start whose forward costs ≤ ``cost_share`` of the teacher's."""
    blocks = max(upsampling_stages(input_shape) - subpixel, 1)
    for width in COMPACT_WIDTHS:
        channels = [max(width // 2**block, COMPACT_MIN_CHANNELS) for block in range(blocks + 1)]
        with torch.device("meta"):  # sized without allocating or drawing random weights
            macs = forward_macs(Generator(input_shape, channels, latent_dim, subpixel).eval(), torch.zeros(1, latent_dim))
        if macs <= cost_share * teacher_macs:
            break
    return Generator(input_shape, channels, latent_dim, subpixel)


def compact_subpixel_generator(input_shape: tuple[int, int, int], teacher_macs: int, latent_dim: int = LATENT_DIM) -> Generator:
    """``compact`` with a sub-pixel last doubling: faster on small teachers at large inputs, a looser BN fit."""
    return compact_generator(input_shape, teacher_macs, latent_dim, subpixel=True)


GeneratorFactory = Callable[[tuple[int, int, int], int, int], nn.Module]

