"""A small vision transformer for 32×32 images (patch 4, about 1 M parameters): a model file for ``--model``.

No BatchNorm anywhere (LayerNorm only), so data-free synthesis cannot invert running
statistics: the ``transformer`` prior applies instead. Trained by
``python -m benchmarks.vit_teacher``::

    fastdfkd synthesize --model examples/cifar_vit.py:vit_tiny --weights vit_tiny-30ep.pt \\
        --input-shape 3,32,32 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --num-samples 512 --out calib.npz

Attention is written out (``qkv`` and ``proj`` linear layers, ``num_heads`` on the
module, as in timm) so that ONNX export, quantization and Torch-Pruning see plain
matrix products.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        weights = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, -1))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CifarViT(nn.Module):
    """Patch embedding (a stride-``patch`` convolution), a class token, learnt positions, pre-norm blocks."""

    def __init__(self, dim: int = 128, depth: int = 6, num_heads: int = 4, mlp_ratio: int = 3,
                 patch: int = 4, image_size: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (image_size // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, num_heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def vit_tiny() -> CifarViT:
    return CifarViT()
