"""Calibration data in the shapes other toolkits ask for, without importing any of them.

TensorRT Model Optimizer and Brevitas run a ``forward_loop(model)`` (or read an ``.npz``
keyed by input name, :func:`save_inputs_npz`), Intel Neural
Compressor a ``run_fn(model)`` of the same shape, AIMET a
``forward_pass_callback(model, args)``; others iterate a ``Dataset``/``DataLoader`` or
plain input tensors. :func:`calibration_data` synthesises (or takes) the inputs once, so
every shape replays the same batches however often a toolkit calls it:

    calib = calibration_data(get_source("fastdfkd", teacher, (3, 32, 32), mean=MEAN, std=STD), num_samples=512)
    mtq.quantize(model, config, forward_loop=calib.forward_loop)             # TensorRT Model Optimizer
    sim.compute_encodings(calib.forward_pass_callback, None)                 # AIMET
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, Union

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.symbolic_shapes import is_concrete_int

from ..cli.options import CommandParser, add_source_arguments, planned_batch, source_from_args, source_options
from ..errors import FastDFKDError
from ..runtime.io import atomic_path, load_npz
from ..sources.base import DataSource, SyntheticSet
from ..sources.calibration import calibration_source_options
from ..teacher.teacher import Teacher, model_device

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 64
ArrayLike = TypeVar("ArrayLike", torch.Tensor, np.ndarray)
CalibrationInput = Union[DataSource, SyntheticSet, "CalibrationData", torch.Tensor, np.ndarray, str, Path, Iterable[Any]]


class CalibrationData:
    """A fixed list of input batches, iterated like a ``DataLoader`` of inputs: the same tensors every time.

    As for a ``DataLoader``, ``len()`` counts batches; :attr:`num_samples` counts samples.
    """

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

    def forward_loop(self, model: nn.Module) -> None:
        """Run every batch through ``model`` without gradients, on the model's device.

        The shape of TensorRT Model Optimizer's ``forward_loop``, Neural Compressor's
        ``run_fn``, a Brevitas ``calibration_mode`` pass and a torchao PT2E calibration
        loop. A ``torch.export``-ed model whose batch size was fixed at export gets the
        inputs in batches of exactly that size (a remainder that fills no batch is left
        out). The model keeps the mode you left it in (call ``model.eval()`` first).
        """
        device = model_device(model)
        with torch.no_grad():
            for inputs in rebatch(self.batches, fixed_batch_size(model), "the exported model"):
                model(inputs.to(device))

    def forward_pass_callback(self, model: nn.Module, args: Any = None) -> None:
        """AIMET's ``forward_pass_callback(model, forward_pass_callback_args)``; ``args`` is not needed."""
        self.forward_loop(model)


def fixed_batch_size(model: nn.Module) -> int | None:
    """The batch size a ``torch.export``-ed (FX graph) model was specialised to; ``None`` when dynamic or not exported."""
    if not isinstance(model, torch.fx.GraphModule):
        return None
    placeholder = next((node for node in model.graph.nodes if node.op == "placeholder"), None)
    value = placeholder.meta.get("val") if placeholder is not None else None
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return None
    size = value.shape[0]
    return int(size) if is_concrete_int(size) else None


def rebatch(batches: list[torch.Tensor], size: int | None, consumer: str) -> list[torch.Tensor]:
    """``batches`` as they are, or re-cut into batches of exactly ``size`` for a consumer that fixes its batch size."""
    if size is None or all(len(batch) == size for batch in batches):
        return batches
    return list(whole_batches(torch.cat(batches), size, consumer).split(size))


def whole_batches(inputs: ArrayLike, size: int, consumer: str) -> ArrayLike:
    """The first inputs that fill whole batches of ``size``, the batch size ``consumer`` insists on."""
    usable = len(inputs) // size * size
    if usable == 0:
        raise FastDFKDError(f"{consumer} takes batches of exactly {size} inputs, but only {len(inputs)} were given; "
                            f"give at least {size}")
    if usable < len(inputs):
        log.info("%s takes batches of %d: the last %d of %d inputs are left out", consumer, size, len(inputs) - usable, len(inputs))
    return inputs[:usable]


def calibration_data(data: CalibrationInput, num_samples: int | None = None, batch_size: int | None = None) -> CalibrationData:
    """Materialise calibration inputs from whatever a script has at hand.

    ``data`` is a source (give ``num_samples``), a :class:`SyntheticSet`, another
    ``CalibrationData``, a tensor or array of inputs, a path to an ``.npz`` (a set from
    ``fastdfkd synthesize``, or any ``.npz`` with an ``inputs`` array) or ``.npy``, or an
    iterable of batches: tensors, :class:`Batch` objects or ``(inputs, labels)`` pairs
    (a real ``DataLoader``). From anything finite, ``num_samples`` takes the first
    samples (and refuses to invent more). Batches hold ``batch_size`` samples (default:
    the data's own batch size; 64 for a source or one tensor), the last one fewer.
    Zero samples are refused.
    """
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
        raise FastDFKDError(f"calibration needs at least one sample, but num_samples is {num_samples!r}; pass a positive number")
    if isinstance(data, CalibrationData):
        batches = list(data.batches)
    elif isinstance(data, DataSource):
        if num_samples is None:
            raise FastDFKDError(f"source {data.name!r} is endless; pass num_samples (e.g. 512) to synthesise a finite calibration set")
        data = data.synthetic_set(num_samples, batch_size or DEFAULT_BATCH_SIZE)
        batches = list(data.inputs.split(data.batch_size))
    elif isinstance(data, SyntheticSet):
        batches = list(data.inputs.split(data.batch_size))
    elif isinstance(data, (torch.Tensor, np.ndarray, str, Path)):
        tensor = torch.as_tensor(load_inputs(data) if isinstance(data, (str, Path)) else data)
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


def add_calibration_arguments(parser: CommandParser, default_samples: int) -> None:
    """The source options and ``--calibration FILE``: what :func:`calibration_from_args` reads."""
    add_source_arguments(parser, default_samples=default_samples)
    parser.add_argument("--calibration", help="use this synthetic set (.npz from `fastdfkd synthesize`) instead of synthesising")


def calibration_from_args(args: argparse.Namespace, teacher: Teacher, activation_bits: int) -> tuple[CalibrationData, str]:
    """The calibration batches a command's ``--calibration FILE`` or source options describe (with the calibration
    defaults for ``activation_bits``-bit activations), and their origin's name."""
    batch_size = args.batch_size
    if args.calibration:
        data, origin = torch.from_numpy(load_npz(args.calibration)[0]), args.calibration
    else:
        source = source_from_args(args, teacher, **calibration_source_options(args.source, activation_bits, teacher, source_options(args)))
        batch_size = planned_batch(args, source, batch_size, args.num_samples)
        data, origin = source.synthetic_set(args.num_samples, batch_size), args.source
    return calibration_data(data, batch_size=batch_size), origin


def save_inputs_npz(path: str | Path, inputs: dict[str, np.ndarray]) -> None:
    """``.npz`` keyed by ONNX input name, as TensorRT Model Optimizer and similar tools read."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{name: np.ascontiguousarray(array, dtype=np.float32) for name, array in inputs.items()})


def load_inputs_npz(path: str | Path) -> dict[str, np.ndarray]:
    """What :func:`save_inputs_npz` wrote: arrays by input name."""
    if not Path(path).is_file():
        raise FastDFKDError(f"calibration file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def load_inputs(path: str | Path, mmap: bool = False) -> np.ndarray:
    """The inputs array of an ``.npz`` (its ``inputs`` entry) or ``.npy`` file; ``mmap`` maps a ``.npy`` instead of reading it."""
    path = Path(path)
    if path.suffix != ".npy":
        return _numeric(load_npz(path)[0], path)
    if not path.is_file():
        raise FastDFKDError(f"calibration file {path} does not exist")
    try:
        return _numeric(np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False), path)
    except ValueError as exc:  # object arrays and malformed headers
        raise FastDFKDError(f"{path} does not hold a numeric array ({exc}); save the inputs as float32") from exc


def _numeric(array: np.ndarray, label: str | Path) -> np.ndarray:
    if array.dtype.kind not in "fiu":
        raise FastDFKDError(f"{label} holds {array.dtype} values, not numbers; give float32 model inputs (N×C×H×W)")
    return array


def _inputs_of(item: Any) -> torch.Tensor:
    if isinstance(item, (tuple, list)) and item:
        item = item[0]  # (inputs, labels) from a real DataLoader, or a Batch
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return torch.as_tensor(item)
    raise FastDFKDError(f"calibration batches must be tensors, arrays, Batch objects or (inputs, labels) pairs, got a {type(item).__name__}")
