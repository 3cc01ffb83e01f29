"""Tiny BatchNorm networks for tests; the CLI tests load them as ``tests/models.py:NAME`` specs.

Self-contained on purpose: the CLI imports this file by path.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv-BN-ReLU ×2, pooled, linear: the smallest network with real BN statistics."""

    def __init__(self, channels: int = 3, width: int = 8, classes: int = 10, batchnorm: bool = True) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if batchnorm else (lambda c: nn.Identity())
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), norm(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), norm(2 * width), nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


def make_teacher(seed: int = 0, **kwargs) -> TinyNet:
    """A TinyNet whose BN running statistics are non-trivial, as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TinyNet(**kwargs)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, kwargs.get("channels", 3), 32, 32, generator=generator) * 2 - 0.5)
    return model.eval()


def tiny() -> nn.Module:
    return make_teacher()


def no_batchnorm() -> nn.Module:
    return TinyNet(batchnorm=False)


def nan_weights() -> nn.Module:
    model = make_teacher()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    return model


class TupleOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_teacher()

    def forward(self, x: torch.Tensor):
        return self.net(x), x


def tuple_output() -> nn.Module:
    return TupleOutput()


def not_a_module():
    return "not a model"
