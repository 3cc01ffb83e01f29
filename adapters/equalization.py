"""Equalize the channels a depthwise convolution reads, before ONNX Runtime quantizes them per tensor.

ONNX Runtime quantizes every activation with one scale per tensor. Where a convolution feeds a
depthwise convolution directly (or through a ReLU), its channels can span ranges a hundred times
apart; PaddleOCR's recognizer opens with one (its stem's channels reach ±12 and ±0.3), and one
8-bit step of the widest channel then rounds away the narrow ones. Channel c can be scaled by
any s_c > 0 in the producer (weights and bias) and by 1/s_c in the depthwise consumer's weights
without changing the float model (ReLU commutes with positive scales). With per-channel weights
the scaling costs the weights nothing either, since each of those channels has its own weight
scale in both convolutions. So each channel is scaled to the range of the widest, measured on
the calibration inputs: the activation equalization of Nagel et al. 2019 ("Data-Free
Quantization Through Weight Equalization and Bias Correction") where it is exact and free.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..teacher.onnx.graph import read_onnx, session
from ..teacher.onnx.operators import onnx_package

THROUGH = ("Relu",)  # relu(s·x) = s·relu(x) for s > 0
RANGE_SAMPLES = 64  # calibration inputs the channels' ranges are measured on
DEAD_CHANNEL = 1e-6  # a channel below this share of the widest carries nothing: it is left as it is


@dataclass(frozen=True)
class EqualizedPair:
    """A producer whose output channels were rescaled for the depthwise convolution reading them."""

    producer: str
    consumer: str
    tensor: str  # the activation between them, which ONNX Runtime quantizes per tensor
    spread_before: float  # the widest channel's range over the narrowest live one's
    spread_after: float


@dataclass(frozen=True)
class _Pair:
    producer: Any
    consumer: Any
    tensor: str


def _attribute(node: Any, name: str, default: Any) -> Any:
    onnx = onnx_package()
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def depthwise_pairs(model: Any) -> list[_Pair]:
    """The (Conv, depthwise Conv) pairs whose channels can be rescaled exactly: the producer's output reaches only the
    consumer (directly or through one ReLU), and both hold their weights (and the producer its bias) as initializers
    used by no other node."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node)
    producer_of = {output: node for node in graph.node for output in node.output}
    graph_outputs = {output.name for output in graph.output}

    def only_reader(tensor: str) -> Any | None:
        nodes = readers.get(tensor, [])
        return nodes[0] if len(nodes) == 1 and tensor not in graph_outputs else None

    def owned(tensors: list[str]) -> bool:
        return all(name in initializers and len(readers[name]) == 1 for name in tensors)

    pairs = []
    for consumer in graph.node:
        if consumer.op_type != "Conv" or len(consumer.input) < 2 or not owned([consumer.input[1]]):
            continue
        channels = initializers[consumer.input[1]].dims[0]
        if _attribute(consumer, "group", 1) != channels or initializers[consumer.input[1]].dims[1] != 1:
            continue  # not depthwise: its weights mix channels, so scaling them costs their quantization
        tensor = consumer.input[0]
        if only_reader(tensor) is not consumer:
            continue
        producer = producer_of.get(tensor)
        if producer is not None and producer.op_type in THROUGH:
            if only_reader(producer.input[0]) is not producer:
                continue
            producer = producer_of.get(producer.input[0])
        if (producer is None or producer.op_type != "Conv" or not owned([name for name in producer.input[1:] if name])
                or initializers[producer.input[1]].dims[0] != channels):
            continue
        pairs.append(_Pair(producer, consumer, tensor))
    return pairs


def channel_ranges(model_path: Path, tensors: list[str], inputs: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Each channel's largest magnitude in ``tensors`` (N×C×…) over ``inputs``, from ONNX Runtime on the float model."""
    onnx = onnx_package()
    model = read_onnx(model_path)
    listed = {output.name for output in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in tensors if name not in listed)
    with tempfile.TemporaryDirectory(prefix="fastdfkd-ranges-") as folder:  # nothing written beside the caller's file
        probe = Path(folder) / "probe.onnx"
        onnx.save(model, str(probe))
        runner = session(probe)
    feed = runner.get_inputs()[0].name
    largest = {name: np.zeros(0, dtype=np.float32) for name in tensors}
    for start in range(0, len(inputs), batch_size):
        values = runner.run(tensors, {feed: np.ascontiguousarray(inputs[start : start + batch_size], dtype=np.float32)})
        for name, value in zip(tensors, values):
            value = np.abs(value).max(axis=tuple(axis for axis in range(value.ndim) if axis != 1))
            largest[name] = value if not len(largest[name]) else np.maximum(largest[name], value)
    return largest


def _spread(ranges: np.ndarray) -> float:
    live = ranges[ranges > DEAD_CHANNEL * ranges.max()]
    return float(live.max() / live.min()) if len(live) else 1.0


def equalize_depthwise_inputs(model_in: Path, workdir: Path, inputs: np.ndarray,
                              batch_size: int = 16) -> tuple[Path, list[EqualizedPair]]:
    """The graph to quantize, and the pairs rescaled: ``model_in`` with the channels between each
    :func:`depthwise_pairs` pair scaled to the widest one's range on (up to :data:`RANGE_SAMPLES` of) the calibration
    ``inputs``, written into ``workdir`` (the float model computes the same); ``model_in`` itself where there is none."""
    onnx = onnx_package()
    numpy_helper = onnx.numpy_helper
    model = read_onnx(model_in)
    pairs = depthwise_pairs(model)
    if not pairs:
        return model_in, []
    ranges = channel_ranges(model_in, [pair.tensor for pair in pairs], inputs[:RANGE_SAMPLES], batch_size)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}

    def rescale(name: str, factor: np.ndarray) -> None:
        array = numpy_helper.to_array(initializers[name])
        scaled = array * factor.reshape(-1, *[1] * (array.ndim - 1))
        initializers[name].CopyFrom(numpy_helper.from_array(scaled.astype(array.dtype), name))

    equalized = []
    for pair in pairs:
        largest = ranges[pair.tensor].astype(np.float64)
        live = largest > DEAD_CHANNEL * largest.max()
        scale = np.where(live, largest.max() / np.where(live, largest, 1.0), 1.0)
        for name in pair.producer.input[1:]:
            if name:
                rescale(name, scale)  # the producer's weights and bias: channel c's output times s_c
        rescale(pair.consumer.input[1], 1 / scale)  # the consumer reads channel c times s_c: its weights divided by s_c
        equalized.append(EqualizedPair(pair.producer.name, pair.consumer.name, pair.tensor, _spread(largest),
                                       _spread(largest * scale)))
    output = workdir / "model.equalized.onnx"
    onnx.save(model, str(output))
    return output, equalized
