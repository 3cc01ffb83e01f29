"""Brevitas adapter: GPTQ on PyTorch models fed by synthetic data; skipped where Brevitas is not installed.

Everything runs the real Brevitas (its fx tracing, calibration and GPTQ on the CPU) and
the real ONNX Runtime on the exported QCDQ model.
"""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import MODELS, run_cli, run_session
from digits import DIGITS_SHAPE, synthetic_digits, trained_digits
from torch import nn

from fastdfkd_plugin import FastDFKDError, Teacher
from fastdfkd_plugin.adapters.brevitas import brevitas_graph, export_onnx, quantize_datafree


@pytest.fixture
def brevitas():
    return pytest.importorskip("brevitas")


def digits_teacher() -> tuple[Teacher, object]:
    model, digits = trained_digits()
    return Teacher(model, DIGITS_SHAPE, mean=[digits.mean], std=[digits.std], device="cpu"), digits


def output_error(model: nn.Module, reference: nn.Module, inputs: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(inputs) - reference(inputs)).pow(2).mean())


def test_four_bit_gptq_from_synthetic_digits_keeps_the_digit_classifier_and_leaves_the_teacher(brevitas):
    teacher, digits = digits_teacher()
    before = {name: value.clone() for name, value in teacher.model.state_dict().items()}
    quantized = quantize_datafree(teacher, synthetic_digits(), weight_bits=4, activation_bits=8, batch_size=16, progress=False)
    with torch.no_grad():
        predictions, reference = quantized(digits.test_x).argmax(1), teacher.model(digits.test_x).argmax(1)
    assert (predictions == reference).float().mean() >= 0.85
    assert (predictions == digits.test_y).float().mean() >= (reference == digits.test_y).float().mean() - 0.08
    assert all(torch.equal(before[name], value) for name, value in teacher.model.state_dict().items())


def test_gptq_fits_the_float_outputs_better_than_rounding_to_nearest(brevitas):
    teacher, digits = digits_teacher()
    calibration, held_out = digits.test_x[:96], digits.test_x[96:]
    errors = {method: output_error(quantize_datafree(teacher, calibration, weight_bits=3, activation_bits=8, method=method,
                                                     batch_size=32, progress=False), teacher.model, held_out)
              for method in ("none", "gptq")}
    assert errors["gptq"] < 0.9 * errors["none"], errors


def test_the_exported_qcdq_model_runs_in_onnx_runtime_like_the_brevitas_model(brevitas, tmp_path):
    teacher, digits = digits_teacher()
    quantized = quantize_datafree(teacher, synthetic_digits(), weight_bits=4, activation_bits=8, batch_size=16, progress=False)
    export_onnx(quantized, digits.test_x[:1], tmp_path / "q.onnx")
    onnx_predictions = run_session(tmp_path / "q.onnx", digits.test_x[:200].numpy()).argmax(1)  # a batch of 200: dynamic
    with torch.no_grad():
        torch_predictions = quantized(digits.test_x[:200]).argmax(1).numpy()
    # At 8-bit activations ORT and Brevitas agree exactly here; at 4 bits the digits' few discrete pixel
    # values land on rounding ties that the two break differently (about 10 % of the predictions).
    assert (onnx_predictions == torch_predictions).mean() >= 0.98


def test_a_model_torch_fx_cannot_trace_is_refused_in_one_sentence(brevitas):
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) if x.sum() > 0 else -self.conv(x)

    with pytest.raises(FastDFKDError, match="Brevitas cannot trace the model with torch.fx .*quantize-onnx --reconstruction"):
        quantize_datafree(DataDependent(), torch.randn(8, 3, 8, 8), progress=False)


def test_cli_writes_a_qcdq_model_and_refuses_what_it_cannot_do(brevitas, synthetic, tmp_path, capsys):
    synthetic.save(str(tmp_path / "calibration.npz"))
    base = ["quantize-brevitas", "--model", f"{MODELS}:tiny", "--input-shape", "3,32,32", "--mean", "0.5,0.5,0.5",
            "--std", "0.25,0.25,0.25", "--device", "cpu", "--batch-size", "8", "--quiet"]
    code, out, _ = run_cli(capsys, *base, "--calibration", str(tmp_path / "calibration.npz"), "--out", str(tmp_path / "q.onnx"))
    assert code == 0 and "W4A8 (GPTQ" in out, out
    assert run_session(tmp_path / "q.onnx", synthetic.inputs[:1].numpy()).shape == (1, 10)
    code, _, err = run_cli(capsys, *base, "--source", "gaussian", "--num-samples", "16", "--out", str(tmp_path / "q.pt"))
    assert code != 0 and "name it *.onnx" in err and not (tmp_path / "q.pt").exists()
    code, _, err = run_cli(capsys, *base, "--source", "gaussian", "--num-samples", "16", "--weight-bits", "12",
                           "--out", str(tmp_path / "r.onnx"))
    assert code != 0 and "weight_bits must be between 2 and 8 bits" in err and not (tmp_path / "r.onnx").exists()


def test_without_brevitas_one_sentence_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "brevitas", None)
    monkeypatch.setitem(sys.modules, "brevitas.graph.quantize", None)
    with pytest.raises(FastDFKDError, match=r"Brevitas is not installed; pip install 'fastdfkd-plugin\[brevitas\]'"):
        brevitas_graph()
