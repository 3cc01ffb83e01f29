"""The FastDFKD generator G(z; θ), sized from the model's input shape."""

from __future__ import annotations

import math

import torch
from torch import nn


class Generator(nn.Module):
    """Latent vector to an image in [0, 1] (the paper's CIFAR generator, generalised).

    At 32×32 this is exactly the paper's network: Linear 256→128·8·8, BN, then two
    ×2 upsampling stages (conv 128→128, conv 128→64, each BN + LeakyReLU 0.2), a
    final conv to C channels and a sigmoid (about 2.3M parameters). Larger inputs get
    one more upsampling stage per doubling, so the first feature map stays 8–15 pixels
    wide; sizes that are not powers of two are cropped at the end. It always runs in
    train mode: its BatchNorm layers normalise each synthesised batch.
    """

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int = 256, width: int = 128) -> None:
        super().__init__()
        channels, height, width_px = input_shape
        stages = max(0, int(math.floor(math.log2(min(height, width_px) / 8))))
        self.latent_dim = latent_dim
        self.output_hw = (height, width_px)
        self.init_hw = (math.ceil(height / 2**stages), math.ceil(width_px / 2**stages))
        self.width = width
        self.project = nn.Linear(latent_dim, width * self.init_hw[0] * self.init_hw[1])
        layers: list[nn.Module] = [nn.BatchNorm2d(width)]
        in_ch = width
        for stage in range(max(stages, 1)):
            out_ch = width // 2 if stage == max(stages, 1) - 1 else width
            if stage < stages:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2)]
            in_ch = out_ch
        layers += [nn.Conv2d(in_ch, channels, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = self.project(z).view(z.shape[0], self.width, *self.init_hw)
        image = self.body(features)
        return image[:, :, : self.output_hw[0], : self.output_hw[1]]
