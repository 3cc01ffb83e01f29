"""Equalizing the channels a depthwise convolution reads: exact in float, found only where it is, and what it buys
ONNX Runtime's per-tensor activations. Real onnx and onnxruntime throughout."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import SHAPE, run_session
from models import DepthwiseStem, depthwise_stem
from onnx import TensorProto, helper, numpy_helper

from fastdfkd_plugin.adapters.equalization import channel_ranges, depthwise_pairs, equalize_depthwise_inputs
from fastdfkd_plugin.adapters.onnx_export import export_onnx
from fastdfkd_plugin.adapters.onnxruntime import quantize_datafree


def exported(model: torch.nn.Module, path):
    export_onnx(model, torch.zeros(1, *SHAPE), path)
    return path


def images(count: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *SHAPE)).astype(np.float32)


@pytest.mark.parametrize("relu", [True, False])
def test_equalized_graph_computes_the_same_and_its_channels_share_one_range(tmp_path, relu):
    torch.manual_seed(0)
    path = exported(DepthwiseStem(relu=relu).eval(), tmp_path / "model.onnx")
    (pair,) = depthwise_pairs(onnx.load(str(path)))
    equalized_path, equalized = equalize_depthwise_inputs(path, tmp_path, images())
    assert [(step.producer, step.consumer, step.tensor) for step in equalized] == [
        (pair.producer.name, pair.consumer.name, pair.tensor)]
    assert equalized[0].spread_before > 100 and equalized[0].spread_after == pytest.approx(1.0, abs=1e-3)
    inputs = images(8, seed=1)  # not the inputs the ranges were measured on
    np.testing.assert_allclose(run_session(equalized_path, inputs), run_session(path, inputs), rtol=1e-4, atol=1e-5)
    ranges = channel_ranges(equalized_path, [pair.tensor], images(), batch_size=8)[pair.tensor]
    assert ranges.max() / ranges.min() == pytest.approx(1.0, abs=1e-3)


def conv(name: str, source: str, output: str, weight: np.ndarray, group: int = 1) -> tuple[helper.NodeProto, TensorProto]:
    return (helper.make_node("Conv", [source, f"{name}.w"], [output], name=name, group=group, pads=[1, 1, 1, 1]),
            numpy_helper.from_array(weight.astype(np.float32), f"{name}.w"))


def graph_of(nodes_and_weights, outputs: list[str]) -> onnx.ModelProto:
    nodes, weights = zip(*nodes_and_weights)
    graph = helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs], list(weights))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_only_exact_and_free_pairs_are_equalized():
    rng = np.random.default_rng(0)
    stem, depthwise, dense = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal((4, 4, 3, 3))
    assert len(depthwise_pairs(graph_of([conv("a", "x", "t", stem), conv("b", "t", "y", depthwise, group=4)], ["y"]))) == 1
    # the consumer mixes channels: scaling its input channels would change its per-channel weight quantization
    assert not depthwise_pairs(graph_of([conv("a", "x", "t", stem), conv("b", "t", "y", dense)], ["y"]))
    # the producer's output is read elsewhere too (here: it is a graph output), which would see the scaled channels
    assert not depthwise_pairs(graph_of([conv("a", "x", "t", stem), conv("b", "t", "y", depthwise, group=4)], ["y", "t"]))
    # between them an operator that does not commute with a positive per-channel scale
    sigmoid = (helper.make_node("Sigmoid", ["t"], ["s"], name="s"), numpy_helper.from_array(np.zeros(1, np.float32), "unused"))
    assert not depthwise_pairs(graph_of([conv("a", "x", "t", stem), sigmoid, conv("b", "s", "y", depthwise, group=4)], ["y"]))


def quantization_error(tmp_path, model: torch.nn.Module, **options) -> tuple[float, int]:
    path = exported(model, tmp_path / "model.onnx")
    out = tmp_path / f"q-{len(list(tmp_path.iterdir()))}.onnx"
    report = quantize_datafree(path, out, input_shape=SHAPE, calibration=images(64), evaluate=False, per_channel=True,
                               weight_type="int8", activation_type="int8", **options)
    inputs = images(32, seed=2)
    reference = run_session(path, inputs)
    return float(np.abs(run_session(out, inputs) - reference).mean() / np.abs(reference).mean()), len(report.equalized)


def test_equalizing_cuts_the_error_of_per_tensor_activations_and_can_be_turned_off(tmp_path):
    model = depthwise_stem()
    plain, none = quantization_error(tmp_path, model, equalize=False)
    equalized, pairs = quantization_error(tmp_path, model)
    assert (none, pairs) == (0, 1)
    assert equalized < plain / 3, (equalized, plain)
