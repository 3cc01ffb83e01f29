"""Calibration data in the shapes other toolkits ask for, without importing any of them.

TensorRT Model Optimizer and Brevitas run a ``forward_loop(model)``, Intel Neural
Compressor a ``run_fn(model)`` of the same shape, AIMET a
``forward_pass_callback(model, args)``; others iterate a ``Dataset``/``DataLoader`` or
plain input tensors. :func:`calibration_data` synthesises (or takes) the inputs once, so
every shape replays the same batches however often a toolkit calls it:

    calib = calibration_data(get_source("fastdfkd", teacher, (3, 32, 32), mean=MEAN, std=STD), num_samples=512)
    mtq.quantize(model, config, forward_loop=calib.forward_loop)             # TensorRT Model Optimizer
    sim.compute_encodings(calib.forward_pass_callback, None)                 # AIMET
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import FastDFKDError
from ..sources.base import Batch, DataSource, SyntheticSet
from ..teacher import model_device

DEFAULT_BATCH_SIZE = 64
CalibrationInput = Union[DataSource, SyntheticSet, "CalibrationData", torch.Tensor, np.ndarray, Iterable[Any]]


class CalibrationData:
    """A fixed list of input batches; iterating yields the same tensors every time."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)

    def __len__(self) -> int:
        """Number of batches."""
        return len(self.batches)

    @property
    def num_samples(self) -> int:
        return sum(len(batch) for batch in self.batches)

    @property
    def inputs(self) -> torch.Tensor:
        """All samples as one N×… tensor."""
        return torch.cat(self.batches)

    def dataset(self) -> Dataset:
        """A map-style ``Dataset`` whose items are single input tensors (no labels)."""
        return _InputDataset(self.inputs)

    def loader(self, batch_size: int | None = None) -> DataLoader:
        """A ``DataLoader`` over :meth:`dataset`, in order; batches of this set's size unless given."""
        return DataLoader(self.dataset(), batch_size=batch_size or len(self.batches[0]), shuffle=False)

    def forward_loop(self, model: nn.Module) -> None:
        """Run every batch through ``model`` without gradients, on the model's device.

        The shape of TensorRT Model Optimizer's ``forward_loop``, Neural Compressor's
        ``run_fn`` and a Brevitas ``calibration_mode`` pass. The model keeps the mode
        you left it in (call ``model.eval()`` first, as for any calibration).
        """
        device = model_device(model)
        with torch.no_grad():
            for inputs in self.batches:
                model(inputs.to(device))

    def forward_pass_callback(self, model: nn.Module, args: Any = None) -> None:
        """AIMET's ``forward_pass_callback(model, forward_pass_callback_args)``; ``args`` is not needed."""
        self.forward_loop(model)


class _InputDataset(Dataset):
    def __init__(self, inputs: torch.Tensor) -> None:
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.inputs[index]


def calibration_data(data: CalibrationInput, num_samples: int | None = None, batch_size: int | None = None) -> CalibrationData:
    """Materialise calibration inputs from a source, a synthetic set, a tensor/array or an iterable of batches.

    A source is endless, so it needs ``num_samples``; from anything finite,
    ``num_samples`` takes the first samples (and refuses to invent more). Iterables may
    yield tensors, :class:`Batch` objects or ``(inputs, labels)`` pairs, as a real
    ``DataLoader`` does. Batches hold ``batch_size`` samples (default: the size of the
    data's first batch; 64 for a source or one tensor), the last one fewer. Zero samples
    are refused.
    """
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
        raise FastDFKDError(f"calibration needs at least one sample, but num_samples is {num_samples!r}; pass a positive number")
    if isinstance(data, CalibrationData):
        batches = list(data.batches)
    elif isinstance(data, DataSource):
        if num_samples is None:
            raise FastDFKDError(f"source {data.name!r} is endless; pass num_samples (e.g. 512) to synthesise a finite calibration set")
        synthetic = data.synthetic_set(num_samples, batch_size or DEFAULT_BATCH_SIZE)
        batches = [batch.inputs for batch in synthetic]
    elif isinstance(data, (torch.Tensor, np.ndarray)):
        tensor = torch.as_tensor(data)
        batches = list(tensor.split(batch_size or DEFAULT_BATCH_SIZE)) if len(tensor) else []
    else:
        batches = [_inputs_of(item) for item in data]
    batches = [batch for batch in batches if len(batch)]
    available = sum(len(batch) for batch in batches)
    if available == 0:
        raise FastDFKDError("the calibration data holds zero samples; calibrating on nothing is refused, so pass at least one sample")
    if num_samples is not None and num_samples > available:
        raise FastDFKDError(f"num_samples={num_samples} asks for more than the {available} calibration samples given; "
                            "synthesise more or lower num_samples")
    count, size = num_samples or available, batch_size or len(batches[0])
    if [len(batch) for batch in batches] != [size] * (count // size) + ([count % size] if count % size else []):
        batches = list(torch.cat(batches)[:count].split(size))
    return CalibrationData(batches)


def _inputs_of(item: Any) -> torch.Tensor:
    if isinstance(item, Batch):
        return item.inputs
    if isinstance(item, (tuple, list)) and item:
        item = item[0]  # (inputs, labels) from a real DataLoader
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return torch.as_tensor(item)
    raise FastDFKDError(f"calibration batches must be tensors, arrays, Batch objects or (inputs, labels) pairs, got a {type(item).__name__}")
