"""AMD Quark adapter: AdaRound / AdaQuant on ONNX models fed by synthetic data; skipped where Quark is not installed.

Everything runs the real Quark (its fine-tuning on the CPU) and the real ONNX Runtime.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import MODELS, SHAPE, priors_built_by, quantized_weights, run_cli, run_session
from digits import DIGITS_SHAPE, synthetic_digits, trained_digits

from fastdfkd_plugin import FastDFKDError, Teacher
from fastdfkd_plugin.adapters import onnxruntime as ort_adapter
from fastdfkd_plugin.adapters.onnx_export import export_onnx
from fastdfkd_plugin.adapters.onnxruntime import calibration_reader, quantize_datafree
from fastdfkd_plugin.adapters.quark import narrowed_integer_ranges, quantize_reconstructed, quark_onnx, reconstruction_config


@pytest.fixture
def quark():
    return pytest.importorskip("quark.onnx")


def test_four_bit_adaround_from_synthetic_digits_keeps_the_digit_classifier(quark, tmp_path):
    teacher, digits = trained_digits()
    report = quantize_datafree(Teacher(teacher, DIGITS_SHAPE, mean=[digits.mean], std=[digits.std], device="cpu"),
                               tmp_path / "w4.onnx", calibration=synthetic_digits(), batch_size=16, weight_type="int4", activation_type="uint8", per_channel=True,
                               reconstruction="adaround", reconstruction_options={"iterations": 30})
    weights = quantized_weights(report.output)
    assert weights and all(values.min() >= -7 and values.max() <= 7 for values in weights.values())
    assert max(len(np.unique(values)) for values in weights.values()) > 8  # a 16-level grid in use, not a collapsed one
    predictions = run_session(report.output, digits.test_x.numpy()).argmax(1)
    with torch.no_grad():
        reference = teacher(digits.test_x).argmax(1).numpy()
    assert (predictions == reference).mean() >= 0.85
    assert (predictions == digits.test_y.numpy()).mean() >= (reference == digits.test_y.numpy()).mean() - 0.08


def test_reconstruction_keeps_the_sources_own_prior_even_at_4_bit_activations(quark, teacher, tmp_path, monkeypatch):
    """AdaRound fits layer outputs on the set: faithful BatchNorm-prior images, not auto-calibration's tighter ones."""
    priors = priors_built_by(monkeypatch, ort_adapter)
    quantize_datafree(teacher, tmp_path / "q.onnx", input_shape=SHAPE, num_samples=8, batch_size=8, device="cpu",
                      source_options={"steps": 2, "warmup_tasks": 2, "latent_dim": 32}, weight_type="int4", activation_type="uint4",
                      per_channel=True, reconstruction="adaround", reconstruction_options={"iterations": 1})
    assert priors == ["batchnorm ×10"]


def test_adaround_moves_some_weights_to_the_other_neighbour_and_none_further(quark, tmp_path):
    teacher, digits = trained_digits()
    export_onnx(teacher, digits.test_x[:1], tmp_path / "m.onnx")
    data = digits.test_x[:48].numpy()
    outputs = {}
    for name, method, tuning in (("nearest", None, {}), ("fitted", "adaround", {"iterations": 60})):
        quantize_reconstructed(tmp_path / "m.onnx", tmp_path / f"{name}.onnx", calibration_reader(tmp_path / "m.onnx", data, 16),
                               method, weight_type="int4", **tuning)
        outputs[name] = quantized_weights(tmp_path / f"{name}.onnx")
    steps = np.concatenate([np.abs(outputs["fitted"][key] - outputs["nearest"][key]).ravel() for key in outputs["nearest"]])
    assert steps.max() <= 1 and (steps == 1).sum() > 0


def test_a_quark_script_takes_the_calibration_reader_as_it_is(quark, onnx_file, synthetic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a bare Quark call writes quantized_info.csv into the current directory
    quark.ModelQuantizer(reconstruction_config("adaquant", iterations=5)).quantize_model(
        str(onnx_file), str(tmp_path / "q.onnx"), calibration_reader(onnx_file, synthetic, batch_size=8))
    assert quantized_weights(tmp_path / "q.onnx")
    assert run_session(tmp_path / "q.onnx", synthetic.inputs[:4]).shape == (4, 10)


def test_the_narrowed_ranges_are_restored_after_quantizing_even_on_failure(quark):
    from onnx import TensorProto
    from quark.onnx.quantization import quant_utils

    before = {key: tuple(map(int, value)) for key, value in quant_utils.ONNX_INT_TYPE_RANGE.items()}
    with pytest.raises(RuntimeError), narrowed_integer_ranges("int4", "uint4"):
        assert tuple(map(int, quant_utils.ONNX_INT_TYPE_RANGE[TensorProto.UINT8])) == (0, 15)
        raise RuntimeError("Quark failed")
    assert {key: tuple(map(int, value)) for key, value in quant_utils.ONNX_INT_TYPE_RANGE.items()} == before


def test_cli_quantizes_with_adaround_and_refuses_what_it_cannot_do(quark, onnx_file, tmp_path, capsys):
    base = ["quantize-onnx", "--onnx", str(onnx_file), "--model", f"{MODELS}:tiny", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
            "--source", "gaussian", "--num-samples", "16", "--batch-size", "8", "--device", "cpu"]
    code, out, _ = run_cli(capsys, *base, "--out", str(tmp_path / "q.onnx"), "--weight-type", "int4", "--per-channel",
                           "--reconstruction", "adaround", "--iterations", "5", "--quiet")
    assert code == 0 and "adaround (AMD Quark)" in out and quantized_weights(tmp_path / "q.onnx")
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "r.onnx"), "--iterations", "5")
    assert code != 0 and "add --reconstruction" in err and not (tmp_path / "r.onnx").exists()
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "r.onnx"), "--reconstruction", "adaquant", "--weight-type", "int16")
    assert code != 0 and "weights int8 or int4" in err and not (tmp_path / "r.onnx").exists()
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "r.onnx"), "--reconstruction", "adaquant", "--op-types", "Conv")
    assert code != 0 and "op_types_to_quantize do not apply" in err


def test_without_quark_one_sentence_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "quark", None)
    monkeypatch.setitem(sys.modules, "quark.onnx", None)
    with pytest.raises(FastDFKDError, match=r"AMD Quark is not installed; pip install 'fastdfkd-plugin\[quark\]'"):
        quark_onnx()
