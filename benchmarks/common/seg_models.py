"""Fully convolutional BatchNorm segmenters for CamVid: a slim ResNet-18 encoder with a DeepLabV3+-like decoder.

Sized for two CPU cores (the teacher about 1 GMAC per 180×240 image, the student, at
half the widths, about 4× cheaper) and kept to what the toolkits handle: plain
convolutions, BatchNorm, ReLU, max-pooling, bilinear interpolation, add and concatenate,
so both export to ONNX and prune with Torch-Pruning. The logits are upsampled to the
input's own size, so any H×W works (180×240 is not a multiple of the output stride).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .edge_models import BasicBlock


def conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DeepLabLite(nn.Module):
    """ResNet-18 stages of widths ``width``·(1, 2, 4, 8), output stride 16 (the last stage dilated), and a decoder of
    ``decoder_width`` channels that fuses the stride-16 context with the stride-4 features before the classifier."""

    def __init__(self, width: int, decoder_width: int, num_classes: int = 11) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        self.layer1 = nn.Sequential(BasicBlock(width, width, 1), BasicBlock(width, width, 1))  # stride 4
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width, 1))  # stride 8
        self.layer3 = nn.Sequential(BasicBlock(2 * width, 4 * width, 2), BasicBlock(4 * width, 4 * width, 1))  # stride 16
        self.layer4 = nn.Sequential(BasicBlock(4 * width, 8 * width, 1, 2), BasicBlock(8 * width, 8 * width, 1, 2))
        self.context = conv_bn_relu(8 * width, decoder_width)
        self.skip = conv_bn_relu(width, decoder_width // 2, kernel=1)
        self.fuse = nn.Sequential(conv_bn_relu(decoder_width + decoder_width // 2, decoder_width),
                                  conv_bn_relu(decoder_width, decoder_width))
        self.classifier = nn.Conv2d(decoder_width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.layer1(self.stem(x))
        context = self.context(self.layer4(self.layer3(self.layer2(low))))
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.fuse(torch.cat([context, self.skip(low)], 1)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


SEGMENTERS = {  # name → architecture; trained by seg_training.load_segmenter
    "camvid_teacher": lambda: DeepLabLite(32, 64),
    "camvid_student": lambda: DeepLabLite(16, 32),
}
