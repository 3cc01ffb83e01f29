"""Set quality measures and the preview grid."""

from __future__ import annotations

import zlib

import pytest
import torch
from torch import nn

from fastdfkd_plugin.evaluation.preview import image_grid, write_png
from fastdfkd_plugin.evaluation.quality import set_quality
from fastdfkd_plugin.teacher.teacher import Teacher


def test_bn_distance_is_zero_when_the_set_matches_the_running_statistics():
    model = nn.Sequential(nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(3))
    inputs = torch.randn(4096, 2, 4, 4) * torch.tensor([2.0, 0.5]).view(1, 2, 1, 1) + torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    model(inputs[:2])
    model[0].running_mean.copy_(inputs.mean((0, 2, 3)))
    model[0].running_var.copy_(inputs.var((0, 2, 3), unbiased=False))
    teacher = Teacher(model, (2, 4, 4), device="cpu")
    matched = set_quality(teacher, inputs, batch_size=1000)
    shifted = set_quality(teacher, inputs + 1, batch_size=1000)
    assert matched.bn_distance < 1e-4
    assert shifted.bn_distance == pytest.approx(2**0.5, rel=1e-4)  # means off by (1, 1), variances equal
    assert sum(matched.class_histogram) == 4096 and 1 / 3 <= matched.confidence <= 1


def test_image_grid_tiles_images_and_writes_a_valid_png(tmp_path):
    grid = image_grid(torch.rand(10, 1, 8, 8), columns=4, padding=1)
    assert grid.shape == (3 * 9 + 1, 4 * 9 + 1, 3) and grid.dtype.name == "uint8"
    write_png(tmp_path / "g.png", grid, scale=2)
    data = (tmp_path / "g.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (grid.shape[1] * 2, grid.shape[0] * 2)
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    assert len(zlib.decompress(data[start : start + length])) == height * (1 + 3 * width)
