"""NNCF adapter: real nncf.quantize on torch.fx and ONNX models; skipped where NNCF is not installed.

The eager-torch backend is left out: it compiles a C++ extension on first use (about
40 s); it takes the same torch-tensor dataset as torch.fx.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from conftest import state_hash
from digits import DIGITS_SHAPE, synthetic_digits, trained_digits

from fastdfkd_plugin import FastDFKDError
from fastdfkd_plugin.adapters import nncf as nncf_adapter
from fastdfkd_plugin.adapters.nncf import nncf_dataset, quantize_nncf_datafree


@pytest.fixture
def nncf():
    return pytest.importorskip("nncf")


def without_bias_correction(nncf) -> dict:
    """NNCF's fast bias correction is too noisy on 64 samples of this small net, whatever the data: with it,
    accuracy fell from 83.8 to 80.8 (real images) and 78.2 (synthetic); without, 83.6 and 86.0."""
    return {"advanced_parameters": nncf.AdvancedQuantizationParameters(disable_bias_correction=True)}


def test_dataset_items_are_single_samples_as_tensors_or_named_arrays(nncf):
    synthetic = synthetic_digits()
    tensors = list(nncf_dataset(synthetic).get_inference_data())
    assert len(tensors) == 64 and tensors[0].shape == (1, *DIGITS_SHAPE) and torch.equal(tensors[5][0], synthetic.inputs[5])
    named = next(iter(nncf_dataset(synthetic, num_samples=3, input_name="input").get_inference_data()))
    assert list(named) == ["input"] and named["input"].dtype == np.float32 and named["input"].shape == (1, *DIGITS_SHAPE)
    assert nncf_dataset(synthetic, num_samples=3).get_length() == 3


def test_torch_fx_model_quantized_on_synthetic_data_keeps_real_accuracy(nncf):
    teacher, digits = trained_digits()
    model = torch.export.export(copy.deepcopy(teacher), (digits.test_x[:1],)).module()  # batch 1, as NNCF feeds it
    before = (state_hash(model), model.code)
    quantized = quantize_nncf_datafree(model, synthetic_digits(), **without_bias_correction(nncf))
    assert (state_hash(model), model.code) == before and quantized is not model
    with torch.no_grad():
        predictions = torch.cat([quantized(x[None]).argmax(1) for x in digits.test_x])
        reference = teacher(digits.test_x).argmax(1)
    assert (predictions == digits.test_y).float().mean() * 100 >= (reference == digits.test_y).float().mean() * 100 - 2
    assert (predictions == reference).float().mean() >= 0.9


def test_onnx_model_gets_its_input_name_from_the_graph(nncf, tmp_path):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    from fastdfkd_plugin.adapters.onnx_export import export_onnx

    teacher, digits = trained_digits()
    export_onnx(teacher, digits.test_x[:1], tmp_path / "m.onnx", input_name="pixels")
    model = onnx.load(str(tmp_path / "m.onnx"))
    before = model.SerializeToString()
    quantized = quantize_nncf_datafree(model, synthetic_digits(), subset_size=48, **without_bias_correction(nncf))
    assert model.SerializeToString() == before
    assert any(node.op_type == "QuantizeLinear" for node in quantized.graph.node)
    runner = onnxruntime.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = runner.run(None, {"pixels": digits.test_x.numpy()})[0]
    with torch.no_grad():
        reference = teacher(digits.test_x).argmax(1).numpy()
    assert (logits.argmax(1) == reference).mean() >= 0.9


def test_subset_size_defaults_to_the_whole_set_and_may_not_exceed_it(nncf, monkeypatch):
    seen = {}
    monkeypatch.setattr(nncf, "quantize", lambda model, dataset, **kwargs: seen.update(kwargs, length=dataset.get_length()))
    quantize_nncf_datafree(torch.nn.Identity(), synthetic_digits(), preset=nncf.QuantizationPreset.MIXED)
    assert seen == {"subset_size": 64, "length": 64, "preset": nncf.QuantizationPreset.MIXED}
    with pytest.raises(FastDFKDError, match="subset_size=300 is larger than the 64 calibration samples"):
        quantize_nncf_datafree(torch.nn.Identity(), synthetic_digits(), subset_size=300)


def test_missing_nncf_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # `import nncf` now raises ImportError, installed or not
    with pytest.raises(FastDFKDError, match=r"NNCF is not installed; pip install 'fastdfkd-plugin\[nncf\]'"):
        nncf_adapter.nncf_dataset(torch.zeros(2, *DIGITS_SHAPE))
