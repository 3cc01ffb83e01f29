"""A tiny CTC-like recognizer for the sequence task's tests; the CLI tests load it as ``tests/sequence_models.py:NAME``."""

from __future__ import annotations

import torch
from models import make_teacher
from torch import nn

CLASSES, POSITIONS = 7, 8


class CTCRecognizer(nn.Module):
    """conv-BN-ReLU ×2, pooled to POSITIONS columns, linear to CLASSES per column: a CTC recognizer's N×T×C."""

    def __init__(self, width: int = 8, softmax: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d((1, POSITIONS))
        self.head = nn.Linear(2 * width, CLASSES, bias=False)  # no bias: the classes follow the input, not a constant
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.head(self.pool(self.body(x)).flatten(2).transpose(1, 2))
        return scores.softmax(-1) if self.softmax else scores


def recognizer() -> nn.Module:
    """Ends in a softmax, as PaddleOCR's exported recognizers do: probabilities."""
    return make_teacher(model=CTCRecognizer)


def recognizer_logits() -> nn.Module:
    """The same network without its softmax: logits, which auto-detection leaves generic."""
    return make_teacher(model=CTCRecognizer, softmax=False)


def small_recognizer() -> nn.Module:
    """A half-width student with logits."""
    return make_teacher(seed=1, model=CTCRecognizer, width=4, softmax=False)
