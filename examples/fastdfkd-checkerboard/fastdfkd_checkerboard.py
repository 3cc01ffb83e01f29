"""A complete third-party fastdfkd source: random checkerboard patterns.

Install it (``pip install examples/fastdfkd-checkerboard``) and it appears in
``fastdfkd sources`` and works as ``--source checkerboard [--max-cell N]`` /
``get_source("checkerboard", ..., max_cell=N)``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from fastdfkd_plugin import DataSource, SourceOption, hookimpl


class CheckerboardSource(DataSource):
    """Checkerboards with random cell sizes and colours (an example plugin)."""

    name = "checkerboard"
    options = (SourceOption(("--max-cell",), "max_cell", "largest cell side in pixels (default 8)", type=int),)

    def __init__(self, teacher, *, max_cell: int = 8, **common: Any) -> None:
        super().__init__(teacher, **common)
        self.max_cell = max_cell

    def synthesize_pixels(self, labels: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.input_shape
        n = len(labels)
        cells = torch.randint(1, self.max_cell + 1, (n, 1, 1, 1), generator=self.rng, device=self.rng.device)
        rows = torch.arange(height, device=self.rng.device).view(1, 1, -1, 1)
        cols = torch.arange(width, device=self.rng.device).view(1, 1, 1, -1)
        board = ((rows // cells + cols // cells) % 2).float()
        colours = torch.rand((n, channels, 2, 1, 1), generator=self.rng, device=self.rng.device)
        pixels = colours[:, :, 0] * board + colours[:, :, 1] * (1 - board)
        return pixels.to(self.device)

    def settings(self) -> dict[str, Any]:
        return {"max_cell": self.max_cell}


@hookimpl
def fastdfkd_register_sources(register: Callable[[type[DataSource]], None]) -> None:
    register(CheckerboardSource)
