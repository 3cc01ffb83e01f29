"""Fallback without data: per-node sensitivity on held-out synthetic inputs, the fewest most damaging nodes kept in float
(or at 8 bits inside a 4-bit model) until the estimate reaches a target, and excluded nodes that really run in float."""

from __future__ import annotations

import copy

import onnx
import onnxruntime
import pytest
import torch
from conftest import MODELS
from conftest import run_cli as run
from digits import DIGITS_SHAPE, trained_digits
from torch import nn

from fastdfkd_plugin import Teacher
from fastdfkd_plugin.adapters import onnxruntime as onnxruntime_adapter
from fastdfkd_plugin.adapters.onnx_export import onnx_accuracy
from fastdfkd_plugin.adapters.onnxruntime import describe_options, quantize_datafree

DIGITS_SOURCE = dict(steps=5, warmup_tasks=5, latent_dim=32)  # as digits.synthetic_digits
TINY = ["--model", f"{MODELS}:tiny", "--input-shape", "3,32,32", "--raw-pixels", "--device", "cpu", "--num-samples", "16",
        "--batch-size", "8", "--steps", "2", "--warmup-tasks", "2", "-q"]


def fused_op(path, node_name: str) -> str:
    """The op type ONNX Runtime's CPU graph optimizer turns ``node_name`` into (QLinearConv when it fused it)."""
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(path) + ".optimized.onnx"
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return next(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node if node.name.startswith(node_name))


@pytest.fixture(scope="module")
def digits_teacher():
    model, digits = trained_digits()
    return Teacher(copy.deepcopy(model), DIGITS_SHAPE, mean=[digits.mean], std=[digits.std], device="cpu"), digits


def test_an_excluded_node_runs_in_float_instead_of_being_fused_into_a_quantized_one(digits_teacher, tmp_path):
    teacher, _ = digits_teacher
    common = dict(num_samples=32, batch_size=16, source_options=DIGITS_SOURCE, per_channel=True, evaluate=False)
    quantize_datafree(teacher, tmp_path / "all.onnx", **common)
    convs = [node.name for node in onnx.load(tmp_path / "all.onnx").graph.node if node.op_type == "Conv"]
    inner = convs[1]  # between two quantized nodes: ONNX Runtime would quantize its float weights and fuse it
    assert fused_op(tmp_path / "all.onnx", inner) == "QLinearConv"
    quantize_datafree(teacher, tmp_path / "excluded.onnx", nodes_to_exclude=[inner], **common)
    assert fused_op(tmp_path / "excluded.onnx", inner) == "Conv"


def test_a_node_kept_in_float_reads_its_input_after_the_relu_onnx_runtime_removed(digits_teacher, tmp_path):
    """ONNX Runtime drops a Relu before an unsigned QuantizeLinear (its range clips at zero); a float node fed past that
    pair read the values before the Relu (ResNet-20 at W4A4, one convolution in float: 67 % → 42 %)."""
    teacher, digits = digits_teacher
    common = dict(num_samples=32, batch_size=16, source_options=DIGITS_SOURCE, per_channel=True, evaluate=False)
    quantize_datafree(teacher, tmp_path / "all.onnx", **common)
    after_relu = [node.name for node in onnx.load(tmp_path / "all.onnx").graph.node if node.op_type == "Conv"][1:]
    quantize_datafree(teacher, tmp_path / "excluded.onnx", nodes_to_exclude=after_relu, **common)
    graph = onnx.load(tmp_path / "excluded.onnx").graph
    producer = {output: node for node in graph.node for output in node.output}
    assert all(producer[node.input[0]].op_type == "Relu" for node in graph.node if node.name in after_relu)
    x, y = digits.test_x.numpy(), digits.test_y.numpy()
    assert onnx_accuracy(tmp_path / "excluded.onnx", x, y) >= onnx_accuracy(tmp_path / "all.onnx", x, y) - 1


def test_a_node_kept_in_float_after_a_relu6_gets_its_clip_and_bounds_back(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    common = dict(input_shape=(3, 16, 16), mean=[0.5] * 3, std=[0.5] * 3, source="gaussian", num_samples=32, batch_size=16,
                  evaluate=False, device="cpu")
    quantize_datafree(model, tmp_path / "all.onnx", **common)
    graph = onnx.load(tmp_path / "all.onnx").graph
    assert "Clip" not in {node.op_type for node in graph.node}  # ONNX Runtime dropped it: the uint8 range clips alike
    second = [node.name for node in graph.node if node.op_type == "Conv"][1]
    quantize_datafree(model, tmp_path / "excluded.onnx", nodes_to_exclude=[second], **common)
    graph = onnx.load(tmp_path / "excluded.onnx").graph
    producer = {output: node for node in graph.node for output in node.output}
    assert producer[next(node for node in graph.node if node.name == second).input[0]].op_type == "Clip"
    inputs = torch.randn(8, 3, 16, 16)
    session = onnxruntime.InferenceSession(str(tmp_path / "excluded.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: inputs.numpy()})[0])
    assert torch.allclose(got, model(inputs).detach(), atol=0.05)


@pytest.mark.parametrize("fallback", ["float", "8-bit"])
def test_the_fallback_keeps_the_most_damaging_nodes_until_the_estimate_reaches_the_target(digits_teacher, tmp_path, fallback):
    teacher, digits = digits_teacher
    common = dict(num_samples=64, batch_size=32, source_options=DIGITS_SOURCE, held_out_samples=128, per_channel=True,
                  weight_type="int4", activation_type="uint4")
    plain = quantize_datafree(teacher, tmp_path / "w4a4.onnx", **common)
    kept = quantize_datafree(teacher, tmp_path / "fallback.onnx", accuracy_target=90, fallback=fallback, **common)
    scores = kept.sensitivity
    assert len(scores) == len({score.node for score in scores}) >= 4  # every Conv/Gemm, once
    assert [score.agreement for score in scores] == sorted(score.agreement for score in scores)  # most damaging first
    assert kept.kept_as == fallback and 1 <= len(kept.kept) <= len(scores) and kept.kept == scores[:len(kept.kept)]
    assert kept.fidelity.estimated_relative_accuracy > plain.fidelity.estimated_relative_accuracy
    x, y = digits.test_x.numpy(), digits.test_y.numpy()
    assert onnx_accuracy(tmp_path / "fallback.onnx", x, y) > onnx_accuracy(tmp_path / "w4a4.onnx", x, y)  # real digits agree
    graph = onnx.load(tmp_path / "fallback.onnx").graph
    for score in kept.kept:
        node = next(node for node in graph.node if node.name == score.node)
        expected = ({None} if fallback == "float" else {onnx.TensorProto.INT8, onnx.TensorProto.UINT8})
        assert {dequantized_type(graph, node.input[0]), dequantized_type(graph, node.input[1])} <= expected


def dequantized_type(graph, tensor: str) -> int | None:
    """The integer type ``tensor`` was stored in (its DequantizeLinear's zero point), None for a float tensor."""
    producer = next((node for node in graph.node if tensor in node.output), None)
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    return next(init.data_type for init in graph.initializer if init.name == producer.input[2])


def test_nodes_kept_at_8_bits_inside_a_4_bit_model_get_8_bit_weights_and_inputs_and_run(digits_teacher, tmp_path):
    teacher, digits = digits_teacher
    common = dict(num_samples=32, batch_size=16, source_options=DIGITS_SOURCE, per_channel=True, weight_type="int4",
                  activation_type="uint4", evaluate=False)
    quantize_datafree(teacher, tmp_path / "w4a4.onnx", **common)
    graph = onnx.load(tmp_path / "w4a4.onnx").graph
    first, *rest = [node for node in graph.node if node.op_type in ("Conv", "Gemm")]
    quantize_datafree(teacher, tmp_path / "mixed.onnx", nodes_at_8_bits=[first.name], **common)
    mixed = onnx.load(tmp_path / "mixed.onnx").graph
    nodes = {node.name: node for node in mixed.node}
    assert dequantized_type(mixed, nodes[first.name].input[0]) == onnx.TensorProto.UINT8
    assert dequantized_type(mixed, nodes[first.name].input[1]) == onnx.TensorProto.INT8
    assert all(dequantized_type(mixed, nodes[node.name].input[1]) == onnx.TensorProto.INT4 for node in rest)
    assert onnx_accuracy(tmp_path / "mixed.onnx", digits.test_x.numpy(), digits.test_y.numpy()) > 50  # ONNX Runtime runs it


@pytest.mark.parametrize("extra, problem", [
    (["--keep-8-bit", "/no/such/Conv", "--weight-type", "int4", "--activation-type", "uint4"], "no node named '/no/such/Conv'"),
    (["--keep-8-bit", "/conv/Conv"], "quantize to 8 bits already"),
    (["--accuracy-target", "97", "--fallback", "8-bit"], "use --fallback float"),
])
def test_8_bit_nodes_that_cannot_be_are_refused_before_any_synthesis(capsys, tmp_path, monkeypatch, extra, problem):
    sources = []
    monkeypatch.setattr(onnxruntime_adapter, "get_source", lambda *args, **kwargs: sources.append(args))
    code, _, err = run(capsys, "quantize-onnx", *TINY, "--out", str(tmp_path / "q.onnx"), *extra)
    assert code == 2 and problem in err and sources == []  # refused before any source was built
    assert not (tmp_path / "q.onnx").exists()


def test_a_target_out_of_reach_keeps_every_node_and_says_so(digits_teacher, tmp_path, caplog):
    """Other operators stay quantized, so keeping every Conv/Gemm need not reach the target; then all are kept (the most
    the fallback can do: ResNet-20 at W4A4 with a target of 95 kept none before, 70 % against 78 % for a target of 90)."""
    teacher, _ = digits_teacher
    report = quantize_datafree(teacher, tmp_path / "q.onnx", num_samples=32, batch_size=16, source_options=DIGITS_SOURCE,
                               held_out_samples=64, weight_type="int4", activation_type="uint4", accuracy_target=100,
                               evaluate=False)
    assert report.kept == report.sensitivity and len(report.kept) >= 4
    assert f"all {len(report.kept)} are kept so" in caplog.text and "below the 100 % target" in caplog.text
    graph = onnx.load(tmp_path / "q.onnx").graph
    assert all(dequantized_type(graph, node.input[1]) == onnx.TensorProto.INT8 for node in graph.node
               if node.name in {score.node for score in report.kept} and node.op_type == "Conv")


def test_sensitivity_prints_every_node_most_damaging_first_and_draws_it(capsys, tmp_path):
    code, out, err = run(capsys, "sensitivity", *TINY, "--weight-type", "int4", "--activation-type", "uint4",
                         "--plot", str(tmp_path / "nodes.png"))
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0].startswith("/")]
    assert len(rows) >= 3 and all(row[1] in ("Conv", "Gemm", "MatMul") for row in rows)
    agreements = [float(row[2]) for row in rows]
    assert agreements == sorted(agreements)
    assert (tmp_path / "nodes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("extra, problem", [(["--accuracy-target", "120"], "at most 100"),
                                           (["--accuracy-target", "97", "--reconstruction", "adaround"], "drop --reconstruction"),
                                           (["--keep-8-bit", "/conv/Conv", "--reconstruction", "adaround"], "drop --reconstruction")])
def test_an_impossible_accuracy_target_is_one_sentence(capsys, tmp_path, extra, problem):
    code, _, err = run(capsys, "quantize-onnx", *TINY, "--out", str(tmp_path / "q.onnx"), *extra)
    assert code == 2 and problem in err
    assert not (tmp_path / "q.onnx").exists()


def test_settings_whose_graph_onnx_runtime_cannot_load_write_nothing(capsys, tmp_path):
    code, _, err = run(capsys, "quantize-onnx", *TINY, "--out", str(tmp_path / "q.onnx"), "--weight-type", "int8",
                       "--activation-type", "uint4")  # fused into QLinearConv, which takes no 4-bit inputs
    assert code == 2 and "ONNX Runtime cannot run the graph it quantized" in err and "--weight-type int4" in err
    assert list(tmp_path.iterdir()) == []


def test_search_keeps_the_calibration_estimated_best_on_the_selection_set(digits_teacher, tmp_path):
    teacher, digits = digits_teacher
    report = quantize_datafree(teacher, tmp_path / "searched.onnx", num_samples=64, batch_size=32, source_options=DIGITS_SOURCE,
                               held_out_samples=128, weight_type="int4", activation_type="uint4", search=True)
    settings = [setting for setting, _ in report.searched]
    assert sorted(settings) == sorted(["MinMax, per-channel weights", "MinMax, per-tensor weights",
                                       "Percentile, per-channel weights", "Percentile, per-tensor weights"])
    best = max(report.searched, key=lambda pair: pair[1])[0]
    assert best == describe_options({"calibrate_method": report.options["calibrate_method"].split(".")[-1],
                                     "per_channel": report.options["per_channel"] == "True"})
    assert onnx_accuracy(tmp_path / "searched.onnx", digits.test_x.numpy(), digits.test_y.numpy()) > 50  # a working model
