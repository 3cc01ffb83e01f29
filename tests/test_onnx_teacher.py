"""An ONNX file as the teacher: conversion to torch, its check against the real ONNX Runtime, refusals, the commands.

Graphs come from ``torch.onnx.export`` at several opsets, with and without ONNX Runtime's
graph optimisation, and from a package nobody here wrote (rapidocr-onnxruntime ships
PaddleOCR's models in its wheel).
"""

from __future__ import annotations

import hashlib
import importlib.util
import weakref
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from conftest import FAST, MODELS, SHAPE, run_cli, run_session
from models import make_teacher, residual, tiny_vit
from torch import nn

from fastdfkd_plugin import FastDFKDError, Teacher, get_source, load_model, load_onnx_model
from fastdfkd_plugin.adapters.onnxruntime import quantize_datafree
from fastdfkd_plugin.adapters.torch_pruning import prune_datafree
from fastdfkd_plugin.synthesis.registry import make_prior
from fastdfkd_plugin.teacher.onnx.graph import OnnxModule
from fastdfkd_plugin.teacher.onnx.operators import OPERATORS

MEAN_STD = ("--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25")


class DenseOps(nn.Module):
    """A small segmenter-shaped net using the operators a dense or mobile graph brings: pools, resizes, a
    transposed convolution, hard activations, concatenation, an asymmetric pad."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6())
        self.down = nn.Conv2d(8, 8, 3, 1, 1, groups=8)
        self.up = nn.ConvTranspose2d(8, 4, 2, 2)
        self.head = nn.Conv2d(8 + 4 + 3, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        pooled = F.max_pool2d(F.hardswish(self.down(stem)), 3, 2, 1, ceil_mode=True)
        pooled = F.leaky_relu(F.avg_pool2d(F.pad(pooled, (0, 1, 0, 1)), 2, 1), 0.1)
        wide = F.interpolate(pooled, size=stem.shape[2:], mode="bilinear", align_corners=False)
        maps = torch.cat([wide, torch.sigmoid(self.up(stem))[:, :, ::2, ::2], F.interpolate(x, scale_factor=0.5, mode="nearest")], 1)
        return F.interpolate(self.head(maps), scale_factor=2.0, mode="nearest")


def export(model: nn.Module, path: Path, opset: int, dynamic: bool = True, shape=SHAPE, **options) -> Path:
    torch.onnx.export(model.eval(), torch.zeros(1, *shape), str(path), opset_version=opset, input_names=["input"],
                      dynamic_axes={"input": {0: "batch"}} if dynamic else None, dynamo=False, **options)
    return path


def optimised(path: Path, level: str) -> Path:
    """The graph as ONNX Runtime rewrites it at ``level`` (basic: folding; extended: fused com.microsoft ops)."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, f"ORT_ENABLE_{level.upper()}")
    options.optimized_model_filepath = str(path.with_name(f"{path.stem}.{level}.onnx"))
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Path(options.optimized_model_filepath)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- conversion ------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [make_teacher, residual, tiny_vit, DenseOps], ids=["tinynet", "resnet", "vit", "dense"])
@pytest.mark.parametrize("opset", [11, 13, 17])
def test_exported_graphs_convert_and_match_torch_at_any_batch(build, opset, tmp_path):
    torch.manual_seed(0)
    model = build().eval()
    if opset == 11 and build is tiny_vit:
        pytest.skip("torch exports this ViT's attention only from opset 13 on")
    module = load_onnx_model(export(model, tmp_path / "model.onnx", opset))
    assert module.conversion_check.max_rel_error < 1e-4
    x = torch.randn(5, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(module(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("level", ["basic", "extended"])
def test_graphs_optimised_by_onnx_runtime_convert(level, tmp_path):
    model = residual().eval()
    path = optimised(export(model, tmp_path / "model.onnx", 13), level)
    module = load_onnx_model(path)
    ops = {node.op_type for node in module.nodes}
    assert ("FusedConv" in ops) == (level == "extended")
    with torch.no_grad():
        x = torch.randn(3, *SHAPE)
        assert torch.allclose(module(x), model(x), atol=1e-4, rtol=1e-4)


def test_a_graph_exported_with_batch_one_runs_in_batches_of_any_size(tmp_path):
    model = residual().eval()
    module = load_onnx_model(export(model, tmp_path / "model.onnx", 13, dynamic=False))
    assert module.fixed_batch == 1
    with torch.no_grad():
        x = torch.randn(6, *SHAPE)
        assert torch.allclose(module(x), model(x), atol=1e-4, rtol=1e-4)


def test_batchnorm_nodes_become_batchnorm_layers_with_their_statistics_and_the_prior_follows(tmp_path):
    model = make_teacher().eval()
    kept = export(model, tmp_path / "kept.onnx", 13, do_constant_folding=False)  # no folding: BatchNorm nodes stay
    folded = export(model, tmp_path / "folded.onnx", 13)
    with_bn, without_bn = Teacher(kept, device="cpu"), Teacher(folded, device="cpu")
    assert with_bn.info.num_batchnorm == 2 and without_bn.info.num_batchnorm == 0
    theirs = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    ours = with_bn.batchnorm_layers()
    assert all(torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var) for a, b in zip(theirs, ours))
    prior = lambda teacher: make_prior("auto", teacher, 0.9).name  # noqa: E731
    assert prior(with_bn) == prior(Teacher(model, SHAPE, device="cpu")) == "batchnorm" and prior(without_bn) == "generic"


def test_synthesis_gradients_reach_the_input_through_the_graph(tmp_path):
    teacher = Teacher(export(residual(), tmp_path / "model.onnx", 17), device="cpu", mean=[0.5] * 3, std=[0.25] * 3)
    batch = get_source("fastdfkd", teacher, **FAST).synthetic_set(8, batch_size=4)
    assert batch.inputs.shape == (8, *SHAPE) and torch.isfinite(batch.inputs).all()
    x = torch.randn(2, *SHAPE, requires_grad=True)
    teacher.model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_forward_drops_each_value_after_its_last_reader(tmp_path):
    """A chain of eight Relus with a skip from the first to an Add, and a node nobody reads: when the Add runs, only its
    two inputs are still alive (without liveness every intermediate was, 1.5 GB on PP-OCRv4's recognizer)."""
    make = onnx.helper.make_node
    nodes = [make("Relu", ["input"], ["v0"]), *(make("Relu", [f"v{i - 1}"], [f"v{i}"]) for i in range(1, 8))]
    nodes.insert(4, make("Neg", ["v3"], ["unread"]))
    nodes += [make("Add", ["v7", "v0"], ["sum"]), make("Mul", ["sum", "two"], ["y"])]
    graph = onnx.helper.make_graph(nodes, "chain", [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["n", 3, 4, 4])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                                   [onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    path = tmp_path / "chain.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(path))
    module = load_onnx_model(path, (3, 4, 4))  # checked against ONNX Runtime: the skip still reads v0
    produced: dict[str, weakref.ref] = {}
    alive_at_add: list[str] = []

    def watch(run):
        def watched(owner, node, *inputs):
            if node.op_type == "Add":
                alive_at_add.extend(name for name, value in produced.items() if value() is not None)
            output = run(owner, node, *inputs)
            produced[node.outputs[0]] = weakref.ref(output)
            return output
        return watched

    for node in module.nodes:
        node.operator = watch(node.operator)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        y = module(x)
    assert sorted(alive_at_add) == ["v0", "v7"]
    assert torch.equal(y, 4 * x.relu())


def test_a_graph_without_weights_is_checked_and_runs(tmp_path):
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "relu",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 4, 4])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    path = tmp_path / "relu.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(path))
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(load_onnx_model(path, (3, 4, 4))(x), x.relu())  # the check against ONNX Runtime ran first


# -- refusals --------------------------------------------------------------------------------------

def test_an_unsupported_operator_is_named_with_its_node_and_nothing_is_written(tmp_path, capsys):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["input"], ["r"], name="first"),
         onnx.helper.make_node("NonZero", ["r"], ["where"], name="mystery_node")],
        "g", [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("where", onnx.TensorProto.INT64, None)])
    path = tmp_path / "odd.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(FastDFKDError, match="operator NonZero \\(node 'mystery_node'\\)"):
        load_model(str(path))
    out = tmp_path / "out.onnx"
    code, _, err = run_cli(capsys, "quantize-onnx", "--onnx", str(path), *MEAN_STD, "--out", str(out))
    assert code != 0 and "NonZero" in err and "mystery_node" in err and not out.exists()


def test_a_converter_that_disagrees_with_onnx_runtime_is_refused(tmp_path, monkeypatch):
    path = export(make_teacher(), tmp_path / "model.onnx", 13)
    monkeypatch.setitem(OPERATORS, ("", "Relu"), lambda module, node, x: F.leaky_relu(x, 0.5))
    with pytest.raises(FastDFKDError, match="does not reproduce ONNX Runtime"):
        load_onnx_model(path)
    assert isinstance(load_onnx_model(path, check=False), OnnxModule)  # the check, not the conversion, refused it


def test_onnx_teacher_refusals_say_what_to_do_instead(tmp_path, capsys):
    path = export(make_teacher(), tmp_path / "model.onnx", 13)
    with pytest.raises(FastDFKDError, match="holds its own weights; drop --weights"):
        load_model(str(path), weights="w.pt")
    with pytest.raises(FastDFKDError, match="Conv node '.*' of .* failed on inputs of shape \\(2, 1, 32, 32\\)"):
        load_onnx_model(path)(torch.zeros(2, 1, 32, 32))
    with pytest.raises(FastDFKDError, match="does not fit the teacher's input shape"):
        load_onnx_model(export(make_teacher(), tmp_path / "fixed.onnx", 13, dynamic=False), (3, 64, 64))
    code, _, err = run_cli(capsys, "export-onnx", "--model", str(path), *MEAN_STD, "--out", str(tmp_path / "x.onnx"))
    assert code != 0 and "already an ONNX model" in err
    teacher = Teacher(path, device="cpu")
    with pytest.raises(FastDFKDError, match="cannot be pruned"):
        prune_datafree(teacher, get_source("gaussian", teacher), 2.0)


# -- commands --------------------------------------------------------------------------------------

def test_quantize_onnx_needs_only_the_onnx_file_and_leaves_it_untouched(tmp_path, capsys):
    model = make_teacher()
    path = export(model, tmp_path / "model.onnx", 13)
    before = digest(path)
    out = tmp_path / "model.int8.onnx"
    code, stdout, err = run_cli(capsys, "quantize-onnx", "--onnx", str(path), *MEAN_STD, "--out", str(out),
                                "--num-samples", "16", "--batch-size", "8", "--synthesis-steps", "2", "--warmup-tasks", "1", "-q")
    assert code == 0, err
    assert "agrees with the teacher on 32 random inputs (top-1 agreement 100.0 %)" in stdout and digest(path) == before
    x = np.random.default_rng(0).standard_normal((8, *SHAPE)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).argmax(1).numpy()
    assert (run_session(out, x).argmax(1) == expected).mean() >= 0.75


def test_quantize_datafree_takes_the_path_and_quantizes_that_graph(tmp_path):
    path = export(make_teacher(), tmp_path / "model.onnx", 13)
    report = quantize_datafree(str(path), tmp_path / "q.onnx", mean=[0.5] * 3, std=[0.25] * 3, num_samples=16, batch_size=8,
                               device="cpu", source_options=dict(steps=2, warmup_tasks=1, latent_dim=32))
    assert report.agreement.top1_agreement == 100.0 and Path(report.output).is_file()


def test_distill_trains_a_torch_student_from_an_onnx_teacher(tmp_path, capsys):
    teacher = make_teacher()
    path = export(teacher, tmp_path / "teacher.onnx", 13)
    out = tmp_path / "student.pt"
    code, stdout, err = run_cli(capsys, "distill", "--teacher", str(path), "--student", f"{MODELS}:student", "--raw-pixels",
                                "--kd-steps", "4", "--kd-steps-per-batch", "2", "--kd-batch-size", "8", "--batch-size", "8",
                                "--steps", "2", "--warmup-tasks", "1", "--eval-samples", "16", "--eval-every", "2",
                                "--bank-size", "64", "--device", "cpu", "-q", "--out", str(out))
    assert code == 0, err
    assert "4 KD steps" in stdout
    assert set(torch.load(out, weights_only=True)) == set(load_model(f"{MODELS}:student").state_dict())


# -- a graph from a package nobody here wrote ---------------------------------------------------------

def rapidocr_model(name: str) -> Path:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None:
        pytest.skip("rapidocr-onnxruntime is not installed (the test extra installs it)")
    return Path(spec.submodule_search_locations[0]) / "models" / name


def test_paddleocr_text_direction_classifier_from_a_pip_package_synthesises_and_quantizes(tmp_path, capsys):
    path = rapidocr_model("ch_ppocr_mobile_v2.0_cls_infer.onnx")
    teacher = Teacher(path, (3, 48, 192), device="cpu", mean=[0.5] * 3, std=[0.5] * 3)
    assert teacher.info.num_classes == 2 and teacher.info.num_batchnorm == 35
    assert teacher.model.conversion_check.top1_agreement == 100.0
    images = tmp_path / "set.npz"
    common = ("--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--input-shape", "3,48,192", "--synthesis-steps", "2",
              "--warmup-tasks", "1", "--batch-size", "8", "-q")
    code, _, err = run_cli(capsys, "synthesize", "--model", str(path), "--num-samples", "8", "--out", str(images), *common)
    assert code == 0, err
    assert np.load(images)["inputs"].shape == (8, 3, 48, 192)
    out = tmp_path / "cls.int8.onnx"
    code, stdout, err = run_cli(capsys, "quantize-onnx", "--onnx", str(path), "--num-samples", "16", "--out", str(out), *common)
    assert code == 0, err
    assert out.is_file() and "agrees with the teacher" in stdout


def test_paddleocr_text_detector_converts_and_matches_onnx_runtime():
    module = load_onnx_model(rapidocr_model("ch_PP-OCRv4_det_infer.onnx"), (3, 64, 64))
    assert module.conversion_check.max_abs_error < 1e-4
    assert any(isinstance(layer, nn.ConvTranspose2d) for layer in module.layers.values())


# -- every operator against ONNX Runtime, one small graph each ------------------------------------------

def node(op: str, inputs: list[str], output: str = "y", **attributes):
    return onnx.helper.make_node(op, inputs, [output], **attributes)


CONSTANTS = {"c": np.full((1, 3, 1, 1), 0.7, np.float32), "w": np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32),
             "slope": np.array([0.1, 0.2, 0.3], np.float32).reshape(3, 1, 1), "scale": np.array([1.0, 2.0, 0.5], np.float32),
             "bias": np.array([0.1, -0.2, 0.3], np.float32), "reps": np.array([1, 2, 1, 1], np.int64),
             "shape": np.array([2, 3, 8, 8], np.int64), "axes": np.array([1], np.int64), "split": np.array([1, 2], np.int64),
             "roi": np.array([], np.float32), "scales": np.array([1, 1, 1.5, 2], np.float32),
             "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "kernel": np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32),
             "kernel_t": np.random.default_rng(2).standard_normal((3, 2, 3, 3)).astype(np.float32)}
# id: (nodes, opset, output type); the input x is 2×3×8×8, N(0, 1)
CASES = {
    **{op: ([node(op, ["x"])], 13, onnx.TensorProto.FLOAT)
       for op in ("Abs", "Neg", "Exp", "Floor", "Ceil", "Sin", "Cos", "Softplus", "Softsign", "Tanh", "Sigmoid", "Erf", "Relu")},
    **{op: ([node("Abs", ["x"], "a"), node(op, ["a"])], 13, onnx.TensorProto.FLOAT) for op in ("Log", "Sqrt", "Reciprocal")},
    "Mish": ([node("Mish", ["x"])], 18, onnx.TensorProto.FLOAT),
    "Gelu tanh": ([node("Gelu", ["x"], approximate="tanh")], 20, onnx.TensorProto.FLOAT),
    **{op: ([node(op, ["x"], alpha=0.3)], 13, onnx.TensorProto.FLOAT) for op in ("Elu", "Celu", "Selu", "LeakyRelu")},
    "HardSigmoid": ([node("HardSigmoid", ["x"], alpha=0.3, beta=0.4)], 13, onnx.TensorProto.FLOAT),
    "HardSwish": ([node("HardSwish", ["x"])], 14, onnx.TensorProto.FLOAT),
    "PRelu": ([node("PRelu", ["x", "slope"])], 13, onnx.TensorProto.FLOAT),
    **{op: ([node(op, ["x", "c", "x"])], 13, onnx.TensorProto.FLOAT) for op in ("Max", "Min", "Sum", "Mean")},
    **{op: ([node(op, ["x", "c"])], 13, onnx.TensorProto.FLOAT) for op in ("Sub", "Div", "Pow")},
    "Softmax opset 11 (flattened)": ([node("Softmax", ["x"], axis=1)], 11, onnx.TensorProto.FLOAT),
    "LogSoftmax": ([node("LogSoftmax", ["x"], axis=2)], 13, onnx.TensorProto.FLOAT),
    **{op: ([node(op, ["x"], axes=[1, 3], keepdims=0)], 13, onnx.TensorProto.FLOAT)
       for op in ("ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare", "ReduceMean")},
    "ReduceSum axes input": ([node("ReduceSum", ["x", "axes"])], 13, onnx.TensorProto.FLOAT),
    "ReduceMean axes input": ([node("ReduceMean", ["x", "axes"], keepdims=0)], 18, onnx.TensorProto.FLOAT),
    "ArgMax": ([node("ArgMax", ["x"], axis=1, keepdims=0)], 13, onnx.TensorProto.INT64),
    "GlobalMaxPool": ([node("GlobalMaxPool", ["x"])], 13, onnx.TensorProto.FLOAT),
    "InstanceNormalization": ([node("InstanceNormalization", ["x", "scale", "bias"])], 13, onnx.TensorProto.FLOAT),
    "Tile": ([node("Tile", ["x", "reps"])], 13, onnx.TensorProto.FLOAT),
    "Expand": ([node("Expand", ["c", "shape"])], 13, onnx.TensorProto.FLOAT),
    "Einsum": ([node("Einsum", ["x", "x"], equation="nchw,nchw->nc")], 13, onnx.TensorProto.FLOAT),
    "Split by sizes": ([onnx.helper.make_node("Split", ["x", "split"], ["a", "b"], axis=1), node("Mul", ["a", "a"], "m"),
                        node("ReduceSum", ["b", "axes"], "s"), node("Add", ["m", "s"])], 13, onnx.TensorProto.FLOAT),
    "Split num_outputs": ([onnx.helper.make_node("Split", ["x"], ["a", "b"], axis=3, num_outputs=2), node("Sub", ["a", "b"])],
                          18, onnx.TensorProto.FLOAT),
    "Where Greater Not And Or": ([node("Greater", ["x", "c"], "g"), node("Less", ["x", "c"], "l"), node("Not", ["l"], "n"),
                                  node("And", ["g", "n"], "both"), node("Or", ["both", "l"], "either"),
                                  node("Where", ["either", "x", "c"])], 13, onnx.TensorProto.FLOAT),
    "Cast Size Range": ([node("Size", ["x"], "size"), node("Cast", ["size"], "f", to=onnx.TensorProto.FLOAT),
                         node("Flatten", ["x"], "flat", axis=2), node("Mul", ["flat", "f"])], 13, onnx.TensorProto.FLOAT),
    "Pad reflect": ([node("Pad", ["x", "pads"], mode="reflect")], 13, onnx.TensorProto.FLOAT),
    "Pad edge": ([node("Pad", ["x", "pads"], mode="edge")], 13, onnx.TensorProto.FLOAT),
    "MaxPool asymmetric pads": ([node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0])], 13, onnx.TensorProto.FLOAT),
    "AveragePool counting pads": ([node("AveragePool", ["x"], kernel_shape=[2, 3], pads=[1, 0, 0, 1], count_include_pad=1)],
                                  13, onnx.TensorProto.FLOAT),
    "AveragePool ceil": ([node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], 13, onnx.TensorProto.FLOAT),
    "Conv SAME_UPPER": ([node("Conv", ["x", "kernel"], auto_pad="SAME_UPPER", strides=[2, 2])], 13, onnx.TensorProto.FLOAT),
    "Conv asymmetric pads": ([node("Conv", ["x", "kernel"], pads=[0, 1, 2, 1])], 13, onnx.TensorProto.FLOAT),
    "ConvTranspose output_padding": ([node("ConvTranspose", ["x", "kernel_t"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])],
                                     13, onnx.TensorProto.FLOAT),
    "Resize linear by scales": ([node("Resize", ["x", "roi", "scales"], mode="linear")], 13, onnx.TensorProto.FLOAT),
    "Resize cubic align_corners": ([node("Resize", ["x", "roi", "scales"], mode="cubic", coordinate_transformation_mode="align_corners")],
                                   13, onnx.TensorProto.FLOAT),
    "Gemm transA, alpha, beta": ([node("Flatten", ["x"], "f", axis=3), node("Transpose", ["f"], "t"),
                                  node("Gemm", ["t", "w", "c1"], transA=1, alpha=0.5, beta=2.0)], 13, onnx.TensorProto.FLOAT),
    "MatMul batched": ([node("MatMul", ["x", "x"])], 13, onnx.TensorProto.FLOAT),
    "Range": ([node("Range", ["zero", "eight", "one"], "r"), node("Add", ["x", "r"])], 13, onnx.TensorProto.FLOAT),
    "GreaterOrEqual LessOrEqual": ([node("GreaterOrEqual", ["x", "c"], "g"), node("LessOrEqual", ["x", "c"], "l"),
                                    node("Where", ["g", "x", "c"], "a"), node("Where", ["l", "a", "x"])], 13, onnx.TensorProto.FLOAT),
    "Clip and Unsqueeze before opset 11": ([node("Clip", ["x"], "k", min=-0.5, max=0.5), node("Unsqueeze", ["k"], axes=[0])],
                                           10, onnx.TensorProto.FLOAT),
    "Squeeze Reshape allowzero": ([node("ReduceMean", ["x"], "m", axes=[2, 3]), node("Squeeze", ["m", "squeezed"], "q"),
                                   node("Reshape", ["q", "keep"], allowzero=0)], 14, onnx.TensorProto.FLOAT),
}
CONSTANTS |= {"c1": np.array([0.25], np.float32), "zero": np.array(0.0, np.float32), "eight": np.array(8.0, np.float32),
              "one": np.array(1.0, np.float32), "squeezed": np.array([2, 3], np.int64), "keep": np.array([0, -1, 1], np.int64)}


@pytest.mark.parametrize("case", CASES)
def test_each_operator_matches_onnx_runtime(case):
    nodes, opset, output_type = CASES[case]
    used = {name for n in nodes for name in n.input}
    graph = onnx.helper.make_graph(nodes, "case", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 8, 8])],
                                   [onnx.helper.make_tensor_value_info("y", output_type, None)],
                                   [onnx.numpy_helper.from_array(value, name) for name, value in CONSTANTS.items() if name in used])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = 8
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        ours = OnnxModule(model)(torch.from_numpy(x)).numpy()
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
