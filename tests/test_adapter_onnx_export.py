"""ONNX export and its verification, and ONNX test-data folders (the real onnx / onnxruntime packages, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAST, MODELS, SHAPE, onnx_runtime_missing, run_cli
from models import AutoRangeNet

from fastdfkd_plugin import FastDFKDError, Teacher, get_source
from fastdfkd_plugin.adapters.onnx_export import (
    export_and_verify,
    export_onnx,
    load_onnx_test_data,
    onnx_accuracy,
    save_onnx_test_data,
    verify_onnx,
)


def test_onnx_accuracy_matches_torch(teacher, onnx_file, synthetic):
    inputs = synthetic.inputs.numpy()
    with torch.no_grad():
        labels = teacher(synthetic.inputs).argmax(1).numpy()
    labels[:8] = (labels[:8] + 1) % 10  # 8 of 32 now wrong
    assert onnx_accuracy(onnx_file, inputs, labels, batch_size=5) == pytest.approx(75.0)


# -- export verification ----------------------------------------------------------------------------

def test_export_and_verify_reports_errors_and_agreement(teacher, synthetic, tmp_path):
    result = export_and_verify(teacher, tmp_path / "m.onnx", list(synthetic.inputs.split(synthetic.batch_size)))
    assert result.samples == 32 and result.top1_agreement == 100.0 and result.max_abs_error < 1e-4


def test_realistic_inputs_catch_an_export_divergence_that_noise_hides(tmp_path):
    model = AutoRangeNet().eval()
    noise = [b.inputs for b in get_source("gaussian", model.net, SHAPE, clip=False, device="cpu").synthetic_set(32, 16).batches()]
    export_onnx(model, noise[0][:1], tmp_path / "m.onnx")  # exported with noise, as many scripts do
    teacher = Teacher(model, SHAPE, device=None)
    assert verify_onnx(teacher, tmp_path / "m.onnx", noise).failures(1e-4, 1e-3, 100.0) == []  # noise: looks fine

    realistic = [b.inputs for b in get_source("fastdfkd", model.net, SHAPE, **FAST).synthetic_set(32, 16).batches()]
    assert verify_onnx(teacher, tmp_path / "m.onnx", realistic).failures(1e-4, 1e-3, 100.0)  # images: diverges
    with pytest.raises(FastDFKDError, match="does not match torch"):
        export_and_verify(model, tmp_path / "n.onnx", noise[:1] + realistic)
    assert not (tmp_path / "n.onnx").exists()


# -- test data ---------------------------------------------------------------------------------------

def test_onnx_test_data_folders_round_trip(teacher, synthetic, tmp_path):
    batches = [{"input": b.inputs.numpy()} for b in synthetic.batches()]
    outputs = [{"logits": teacher(b.inputs).detach().numpy()} for b in synthetic.batches()]
    save_onnx_test_data(tmp_path / "data", batches, outputs)
    assert (tmp_path / "data" / "test_data_set_3" / "input_0.pb").exists()
    loaded = load_onnx_test_data(tmp_path / "data")
    assert len(loaded) == 4 and all(np.array_equal(a["input"], b["input"]) for a, b in zip(loaded, batches))
    assert np.array_equal(load_onnx_test_data(tmp_path / "data", "output")[0]["logits"], outputs[0]["logits"])


def test_export_onnx_without_onnxruntime_names_the_extra(tmp_path, capsys, monkeypatch):
    onnx_runtime_missing(monkeypatch)
    code, _, err = run_cli(capsys, "export-onnx", "--model", f"{MODELS}:tiny", "--input-shape", "3,32,32", "--raw-pixels",
                           "--num-samples", "8", "--batch-size", "8", "--steps", "1", "--warmup-tasks", "1", "--device", "cpu",
                           "-q", "--out", str(tmp_path / "m.onnx"))
    assert code == 2 and "pip install 'fastdfkd-plugin[onnxruntime]'" in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()
