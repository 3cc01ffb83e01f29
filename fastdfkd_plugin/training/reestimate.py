"""BatchNorm re-estimation: the cheapest repair after pruning or quantization.

Pruning and fake-quantization shift every activation distribution, so the running
statistics a network was trained with no longer fit it. Recomputing them on a few
hundred inputs recovers much of the loss without a single gradient step. The
statistics are exact population ones (:class:`~fastdfkd_plugin.teacher.batchnorm.BatchNormStatistics`).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..errors import FastDFKDError
from ..sources.base import Batch
from ..teacher.batchnorm import BatchNormStatistics
from ..teacher.teacher import batchnorm_layers, model_device


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
