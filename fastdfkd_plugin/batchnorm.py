"""BatchNorm statistics of inputs, and BatchNorm re-estimation: the cheapest repair after pruning or quantization.

Pruning and fake-quantization shift every activation distribution, so the running
statistics a network was trained with no longer fit it. Recomputing them on a few
hundred inputs recovers much of the loss without a single gradient step.

Synthetic batches match the teacher's BN statistics *as a population* (FastDFKD's BN
momentum averages over tasks), not batch by batch, so the statistics here are the exact
population mean and variance of each BN input over all the given inputs, not the
average of per-batch variances that ``momentum=None`` would give.
:class:`BatchNormStatistics` accumulates them; re-estimation writes them into the
layers, and :mod:`fastdfkd_plugin.quality` compares them with the running statistics.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .errors import FastDFKDError
from .sources.base import Batch
from .teacher import batchnorm_layers, model_device


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


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor | Batch]) -> nn.Module:
    """Replace every BN layer's running statistics by those of its inputs over ``batches``; in place.

    ``batches`` yields input tensors or :class:`~fastdfkd_plugin.Batch` objects (a
    ``SyntheticSet`` works); they are moved to the model's device. Layers run in eval
    mode except the BN layers (so dropout stays off); each BN normalises with its batch
    statistics during the pass, as in training. One batch holding all the inputs makes
    every layer's statistics exact for what the layers after it will see in eval mode.
    If the pass fails, the old statistics are put back. A model without BatchNorm is
    returned unchanged. Returns ``model``, in eval mode.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return model.eval()
    device = model_device(model)
    saved = [(layer.running_mean.clone(), layer.running_var.clone(), layer.num_batches_tracked.clone()) for layer in layers]
    model.eval()
    for layer in layers:
        layer.train()
    seen = 0
    try:
        with BatchNormStatistics(layers) as statistics:
            for batch in batches:
                inputs = batch.inputs if isinstance(batch, Batch) else batch
                model(inputs.to(device))
                seen += len(inputs)
        if seen == 0:
            raise FastDFKDError("BatchNorm re-estimation got no inputs; pass at least one batch")
    except BaseException:
        for layer, (mean, var, count) in zip(layers, saved):
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)
            layer.num_batches_tracked.copy_(count)
        raise
    finally:
        model.eval()
    for layer in layers:
        layer.running_mean.copy_(statistics.mean(layer).to(layer.running_mean.dtype))
        layer.running_var.copy_(statistics.variance(layer, unbiased=True).to(layer.running_var.dtype))
        layer.num_batches_tracked.fill_(seen)
    return model
