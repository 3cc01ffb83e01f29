"""Mobile and edge architectures (no torchvision), for teachers of the sizes users deploy.

Written from the papers' layer tables: MobileNetV1 (Howard et al., 2017; width multiplier
α), MobileNetV2 (Sandler et al., 2018) and ResNet-18 (He et al., 2016, ImageNet stem).
:mod:`.teachers` trains a MobileNetV1 at 64 px and uses the others at 96–224 px with
random weights; :func:`with_batchnorm_statistics` gives their BatchNorm layers running
statistics from random inputs, which is all a speed measurement needs.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, stride: int, groups: int = 1, kernel: int = 3, act: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([nn.ReLU6(inplace=True)] if act else [])


class MobileNetV1(nn.Module):
    def __init__(self, alpha: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        width = lambda c: max(8, int(c * alpha))  # noqa: E731
        plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1)]
        layers, cin = conv_bn(3, width(32), 2), width(32)
        for cout, stride in plan:
            layers += conv_bn(cin, cin, stride, groups=cin) + conv_bn(cin, width(cout), 1, kernel=1)
            cin = width(cout)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = (conv_bn(cin, hidden, 1, kernel=1) if expand != 1 else []) + conv_bn(hidden, hidden, stride, groups=hidden)
        self.body = nn.Sequential(*layers, *conv_bn(hidden, cout, 1, kernel=1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        plan = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        layers: list[nn.Module] = conv_bn(3, 32, 2)
        cin = 32
        for expand, cout, repeats, stride in plan:
            for index in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if index == 0 else 1, expand))
                cin = cout
        self.features = nn.Sequential(*layers, *conv_bn(cin, 1280, 1, kernel=1))
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class BasicBlock(nn.Module):
    """ResNet's two 3×3 convolutions with a shortcut; ``dilation`` keeps a segmenter's deepest stage at a finer stride."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True),
                                  nn.Conv2d(cout, cout, 3, 1, dilation, dilation, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


@torch.no_grad()
def with_batchnorm_statistics(model: nn.Module, input_shape: tuple[int, int, int], batches: int = 4, seed: int = 0) -> nn.Module:
    """Give every BatchNorm layer running statistics (cumulative averages over random uniform batches); returns it in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    for _ in range(batches):
        model(torch.rand(16, *input_shape, generator=generator))
    return model.eval()
