"""Float fallback without data: per-node sensitivity on held-out synthetic inputs, the fewest most damaging nodes kept
in float until the estimate reaches a target, and excluded nodes that really run in float under ONNX Runtime."""

from __future__ import annotations

import copy

import onnx
import onnxruntime
import pytest
from conftest import MODELS
from conftest import run_cli as run
from digits import DIGITS_SHAPE, trained_digits

from fastdfkd_plugin import Teacher
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


def test_the_float_fallback_keeps_the_most_damaging_nodes_until_the_estimate_reaches_the_target(digits_teacher, tmp_path):
    teacher, digits = digits_teacher
    common = dict(num_samples=64, batch_size=32, source_options=DIGITS_SOURCE, held_out_samples=128, per_channel=True,
                  weight_type="int4", activation_type="uint4")
    plain = quantize_datafree(teacher, tmp_path / "w4a4.onnx", **common)
    kept = quantize_datafree(teacher, tmp_path / "fallback.onnx", accuracy_target=90, **common)
    scores = kept.sensitivity
    assert len(scores) == len({score.node for score in scores}) >= 4  # every Conv/Gemm, once
    assert [score.agreement for score in scores] == sorted(score.agreement for score in scores)  # most damaging first
    assert 1 <= len(kept.kept_in_float) <= len(scores) and kept.kept_in_float == scores[:len(kept.kept_in_float)]
    assert kept.fidelity.estimated_relative_accuracy > plain.fidelity.estimated_relative_accuracy
    x, y = digits.test_x.numpy(), digits.test_y.numpy()
    assert onnx_accuracy(tmp_path / "fallback.onnx", x, y) > onnx_accuracy(tmp_path / "w4a4.onnx", x, y)  # real digits agree


def test_a_target_that_floats_cannot_reach_keeps_nothing_in_float_and_says_why(digits_teacher, tmp_path, caplog):
    """Other operators stay quantized, so keeping every Conv/Gemm in float need not reach the target (PP-OCRv4's
    recognizer kept all 51 in float and read fewer words than fully quantized); then none is kept."""
    teacher, _ = digits_teacher
    report = quantize_datafree(teacher, tmp_path / "q.onnx", num_samples=32, batch_size=16, source_options=DIGITS_SOURCE,
                               held_out_samples=64, weight_type="int4", activation_type="uint4", accuracy_target=100,
                               evaluate=False)
    assert report.kept_in_float == [] and len(report.sensitivity) >= 4
    assert "none is kept in float" in caplog.text and "below the 100 % target" in caplog.text


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
                                           (["--accuracy-target", "97", "--reconstruction", "adaround"], "drop --reconstruction")])
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
