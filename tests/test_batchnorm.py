"""BatchNorm re-estimation: exact population statistics, nothing lost on failure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fastdfkd_plugin import Batch, FastDFKDError
from fastdfkd_plugin.training.reestimate import reestimate_batchnorm


def test_statistics_are_those_of_all_inputs_together_not_an_average_of_batches():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Dropout(0.5))
    first, second = torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4) + 5  # very different batch means
    reestimate_batchnorm(model, [first, Batch(second, torch.zeros(8))])
    together = torch.cat([first, second]).transpose(0, 1).flatten(1)
    assert torch.allclose(model[0].running_mean, together.mean(1), atol=1e-5)
    assert torch.allclose(model[0].running_var, together.var(1), atol=1e-4)  # includes the spread between batches
    assert not model.training and not model[1].training


def test_a_failing_pass_puts_the_old_statistics_back():
    model = nn.Sequential(nn.BatchNorm2d(3))
    before = model[0].running_mean.clone(), model[0].running_var.clone()

    def batches():
        yield torch.randn(4, 3, 2, 2) + 3
        raise RuntimeError("reader broke")

    with pytest.raises(RuntimeError, match="reader broke"):
        reestimate_batchnorm(model, batches())
    assert torch.equal(model[0].running_mean, before[0]) and torch.equal(model[0].running_var, before[1])
    with pytest.raises(FastDFKDError, match="no inputs"):
        reestimate_batchnorm(model, [])
    assert torch.equal(model[0].running_mean, before[0])
