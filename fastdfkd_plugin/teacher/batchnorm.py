"""BatchNorm statistics of inputs: exact population statistics, which re-estimation writes and set quality reads.

Synthetic batches match the teacher's BN statistics *as a population* (FastDFKD's BN
momentum averages over tasks), not batch by batch, so the statistics here are the exact
population mean and variance of each BN input over all the given inputs, not the
average of per-batch variances that ``momentum=None`` would give.
:func:`fastdfkd_plugin.training.reestimate.reestimate_batchnorm` writes them into the
layers, and :mod:`fastdfkd_plugin.evaluation.quality` compares them with the running statistics.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchNormStatistics:
    """Per-channel sums of every BN layer's inputs (float64) while attached: exact population statistics.

    ``with BatchNormStatistics(layers):`` hooks the layers; after any number of forward
    passes, :meth:`mean` and :meth:`variance` give each layer's statistics over all of them.
    """

    def __init__(self, layers: list[nn.modules.batchnorm._BatchNorm]) -> None:
        self.layers = layers
        self.sums: dict[nn.Module, list] = {layer: [0, 0, 0] for layer in layers}
        self._handles: list = []

    def _accumulate(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().double().transpose(0, 1).flatten(1)
        totals = self.sums[layer]
        totals[0] = totals[0] + x.sum(1)
        totals[1] = totals[1] + (x * x).sum(1)
        totals[2] += x.shape[1]

    def __enter__(self) -> BatchNormStatistics:
        self._handles = [layer.register_forward_pre_hook(self._accumulate) for layer in self.layers]
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def mean(self, layer: nn.Module) -> torch.Tensor:
        total, _, count = self.sums[layer]
        return total / count

    def variance(self, layer: nn.Module, unbiased: bool = False) -> torch.Tensor:
        _, total_sq, count = self.sums[layer]
        mean = self.mean(layer)
        variance = total_sq / count - mean * mean
        return variance.clamp_min(0) * (count / max(count - 1, 1)) if unbiased else variance
