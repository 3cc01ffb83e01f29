"""BatchNorm re-estimation: the cheapest repair after pruning or quantization.

Pruning and fake-quantization shift every activation distribution, so the running
statistics a network was trained with no longer fit it. Recomputing them on a few
hundred inputs recovers much of the loss without a single gradient step.

Synthetic batches match the teacher's BN statistics *as a population* (FastDFKD's BN
momentum averages over tasks), not batch by batch, so the statistics here are the exact
population mean and variance of each BN input over all the given inputs, not the
average of per-batch variances that ``momentum=None`` would give.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .errors import FastDFKDError
from .sources.base import Batch
from .teacher import model_device

_BatchNorm = nn.modules.batchnorm._BatchNorm


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
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not layers:
        return model.eval()
    device = model_device(model)
    saved = [(layer.running_mean.clone(), layer.running_var.clone(), layer.num_batches_tracked.clone()) for layer in layers]
    sums: dict[nn.Module, list] = {layer: [0, 0, 0] for layer in layers}

    def accumulate(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().double().transpose(0, 1).flatten(1)
        totals = sums[layer]
        totals[0] = totals[0] + x.sum(1)
        totals[1] = totals[1] + (x * x).sum(1)
        totals[2] += x.shape[1]

    handles = [layer.register_forward_pre_hook(accumulate) for layer in layers]
    model.eval()
    for layer in layers:
        layer.train()
    seen = 0
    try:
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
        for handle in handles:
            handle.remove()
        model.eval()
    for layer, (total, total_sq, count) in sums.items():
        mean = total / count
        variance = (total_sq / count - mean * mean).clamp_min(0) * (count / max(count - 1, 1))
        layer.running_mean.copy_(mean.to(layer.running_mean.dtype))
        layer.running_var.copy_(variance.to(layer.running_var.dtype))
        layer.num_batches_tracked.fill_(seen)
    return model
