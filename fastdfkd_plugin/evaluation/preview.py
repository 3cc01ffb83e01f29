"""Image grids of synthesised batches, written as PNG with the standard library alone."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..runtime.io import atomic_path


def image_grid(pixels: torch.Tensor, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile N×C×H×W pixels in [0, 1] into one H'×W'×3 uint8 image (grey inputs repeated)."""
    images = pixels.detach().float().clamp(0, 1).cpu()
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    images = images[:, :3]
    n, _, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (height + padding) + padding, columns * (width + padding) + padding, 3), dtype=np.uint8) * 255
    for index, image in enumerate((images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def write_png(path: str | Path, image: np.ndarray, scale: int = 1) -> None:
    """Write an H×W×3 uint8 array as an RGB PNG, atomically; ``scale`` enlarges by pixel repetition."""
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
