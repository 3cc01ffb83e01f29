"""torchao PT2E adapter: one-call data-free quantization, export errors, saving, CLI.

Everything runs the real torchao prepare_pt2e / convert_pt2e with X86InductorQuantizer on CPU.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

pytest.importorskip("torchao")

from conftest import FAST, MODELS, SHAPE, state_hash
from digits import DIGITS_SHAPE, synthetic_digits, trained_digits
from models import AutoRangeNet, make_teacher

from fastdfkd_plugin import FastDFKDError, Teacher, agreement, get_source
from fastdfkd_plugin.adapters.generic import calibration_data
from fastdfkd_plugin.adapters.torchao import default_quantizer, quantize_pt2e_datafree, save_quantized
from fastdfkd_plugin.cli.main import main

CLI_FAST = ["--raw-pixels", "--steps", "2", "--warmup-tasks", "1", "--batch-size", "8", "--device", "cpu", "-q"]


@pytest.fixture
def synthetic(teacher):
    return get_source("fastdfkd", teacher, SHAPE, **FAST).synthetic_set(40, batch_size=16)  # batches 16, 16, 8


def accuracy(model, digits) -> float:
    with torch.no_grad():
        return 100.0 * (model(digits.test_x).argmax(1) == digits.test_y).float().mean().item()


def quantize_ops(module) -> set[str]:
    return {str(node.target) for node in module.graph.nodes if "quantize" in str(node.target)}


def test_pt2e_round_trip_on_synthetic_data_keeps_real_accuracy_and_leaves_the_model_alone():
    teacher, digits = trained_digits()
    teacher = copy.deepcopy(teacher).train()  # left in training mode: BatchNorm must still be captured in eval mode
    before = state_hash(teacher)
    quantized = quantize_pt2e_datafree(teacher, synthetic_digits())
    assert state_hash(teacher) == before and teacher.training
    teacher.eval()
    assert accuracy(quantized, digits) >= accuracy(teacher, digits) - 2.0
    real = [digits.test_x[i : i + 100] for i in range(0, 500, 100)]
    assert agreement(Teacher(teacher, DIGITS_SHAPE, device=None), quantized, calibration_data(real).inputs) >= 0.90
    assert "quantized_decomposed.dequantize_per_channel.default" in quantize_ops(quantized)
    assert quantized(digits.test_x[:3]).shape == (3, 10)  # dynamic batch, though calibrated with batches of 32


def test_calibration_data_decides_the_ranges():
    """The same call calibrated on a constant image clips every real activation."""
    teacher, digits = trained_digits()
    assert accuracy(quantize_pt2e_datafree(teacher, torch.zeros(4, *DIGITS_SHAPE)), digits) < 20.0


def test_the_quantizer_is_passed_through(teacher, synthetic):
    per_channel = quantize_pt2e_datafree(teacher, synthetic)
    per_tensor = quantize_pt2e_datafree(teacher, synthetic, default_quantizer(per_channel=False))
    assert any("per_channel" in op for op in quantize_ops(per_channel))
    assert not any("per_channel" in op for op in quantize_ops(per_tensor))


def test_a_model_export_cannot_capture_gets_its_first_error_line_and_the_onnx_route():
    with pytest.raises(FastDFKDError) as error:
        quantize_pt2e_datafree(AutoRangeNet(), torch.rand(8, *SHAPE))
    message = str(error.value)
    assert "torch.export cannot capture the model (Could not guard on data-dependent expression" in message
    assert "if x.max() > 1.5:" in message and "fastdfkd quantize-onnx" in message and "\n" not in message


class FixedBatchNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_teacher()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(16, *SHAPE))


def test_a_model_that_fixes_its_batch_size_is_calibrated_in_whole_batches_of_it():
    quantized = quantize_pt2e_datafree(FixedBatchNet(), torch.rand(40, *SHAPE), batch_size=16)  # the last 8 are left out
    assert quantized(torch.rand(16, *SHAPE)).shape == (16, 10)
    with pytest.raises(FastDFKDError, match=r"takes batches of exactly 16 inputs, but only 12 were given; give at least 16"):
        calibration_data(torch.rand(12, *SHAPE)).forward_loop(torch.export.export(FixedBatchNet().eval(), (torch.rand(16, *SHAPE),)).module())


@pytest.mark.parametrize("data, options", [(torch.zeros(0, *SHAPE), {}), (torch.zeros(4, *SHAPE), {"num_samples": 0})])
def test_zero_calibration_samples_are_refused(teacher, data, options):
    with pytest.raises(FastDFKDError, match="at least one sample"):
        quantize_pt2e_datafree(teacher, data, **options)


def test_missing_torchao_names_the_extra(teacher, monkeypatch):
    for name in [name for name in sys.modules if name == "torchao" or name.startswith("torchao.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import torchao...` now raises ImportError
    with pytest.raises(FastDFKDError, match=r"torchao is not installed; pip install 'fastdfkd-plugin\[torchao\]'"):
        quantize_pt2e_datafree(teacher, torch.rand(4, *SHAPE))


def test_saved_program_loads_back_with_a_dynamic_batch(teacher, synthetic, tmp_path):
    quantized = quantize_pt2e_datafree(teacher, synthetic)
    probe = torch.rand(8, *SHAPE)
    save_quantized(quantized, probe[:2], tmp_path / "q.pt2")
    loaded = torch.export.load(tmp_path / "q.pt2").module()
    with torch.no_grad():
        assert torch.equal(loaded(probe), quantized(probe)) and loaded(probe[:5]).shape == (5, 10)
    with pytest.raises(FastDFKDError, match=r"ending in \.pt2"):
        save_quantized(quantized, probe[:2], tmp_path / "q.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.pt2"]  # no temporary file left behind


def test_the_saved_program_loads_with_one_call_in_a_fresh_process(teacher, synthetic, tmp_path):
    save_quantized(quantize_pt2e_datafree(teacher, synthetic), torch.rand(2, *SHAPE), tmp_path / "q.pt2")
    script = ("import torch\nfrom fastdfkd_plugin.adapters.torchao import load_quantized\n"
              f"print(tuple(load_quantized({str(tmp_path / 'q.pt2')!r})(torch.zeros(3, 3, 32, 32)).shape))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "(3, 10)", result.stderr[-2000:]


# -- CLI -------------------------------------------------------------------------------------------

def test_cli_quantize_torch_round_trip(teacher, tmp_path, capsys):
    out = tmp_path / "tiny.int8.pt2"
    code = main(["quantize-torch", "--model", f"{MODELS}:tiny", "--input-shape", "3,32,32", "--num-samples", "24",
                 "--out", str(out), *CLI_FAST])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "calibrated on 24 samples from fastdfkd" in stdout and "per-channel" in stdout and str(out) in stdout
    # the same seeded synthesis and calibration in Python gives the very same quantized model
    same = get_source("fastdfkd", teacher, SHAPE, steps=2, warmup_tasks=1, device="cpu").synthetic_set(24, 8)
    expected, probe = quantize_pt2e_datafree(teacher, same), torch.rand(8, *SHAPE)
    with torch.no_grad():
        assert torch.equal(torch.export.load(out).module()(probe), expected(probe))


def test_cli_quantize_torch_from_a_saved_set_per_tensor(tmp_path, capsys):
    model = f"{MODELS}:tiny"
    assert main(["synthesize", "--model", model, "--input-shape", "3,32,32", "--num-samples", "16",
                 "--out", str(tmp_path / "set.npz"), *CLI_FAST]) == 0
    assert main(["quantize-torch", "--model", model, "--input-shape", "3,32,32", "--calibration", str(tmp_path / "set.npz"),
                 "--per-tensor", "--reduce-range", "--out", str(tmp_path / "q.pt2"), "-q"]) == 0
    assert "16 samples from" in capsys.readouterr().out
    loaded = torch.export.load(tmp_path / "q.pt2").module()
    assert not any("per_channel" in op for op in quantize_ops(loaded))


@pytest.mark.parametrize("case, message", [
    ("unexportable", "torch.export cannot capture the model"),
    ("wrong suffix", "torch.export.load reads only files ending in .pt2"),
])
def test_cli_quantize_torch_bad_input_exits_2_with_one_sentence(tmp_path, capsys, case, message):
    model, out = (f"{MODELS}:AutoRangeNet", "q.pt2") if case == "unexportable" else (f"{MODELS}:tiny", "q.pt")
    code = main(["quantize-torch", "--model", model, "--input-shape", "3,32,32", "--source", "gaussian", "--raw-pixels",
                 "--num-samples", "8", "--out", str(tmp_path / out), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / out).exists()
