"""The ONNX Runtime calibration reader, against the real ``quantize_static``."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from conftest import FAST, SHAPE
from fastdfkd_plugin import get_source
from fastdfkd_plugin.adapters.onnxruntime import SourceCalibrationReader, export_onnx


def test_reader_protocol_rewind_len_and_range():
    reader = SourceCalibrationReader([torch.full((2, 1), float(i)) for i in range(5)], "input")
    assert len(reader) == 5
    assert [reader.get_next()["input"][0, 0] for _ in range(5)] == [0, 1, 2, 3, 4] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next()["input"].dtype == np.float32
    reader.set_range(1, 3)
    assert [reader.get_next()["input"][0, 0] for _ in range(2)] == [1, 2] and reader.get_next() is None


@pytest.mark.parametrize("strided", [False, True])
def test_synthetic_set_calibrates_real_onnxruntime_quantization(teacher, tmp_path, strided):
    synthetic = get_source("fastdfkd", teacher, SHAPE, **FAST).synthetic_set(32, batch_size=8)
    export_onnx(teacher, synthetic.inputs[:1], tmp_path / "m.onnx")
    extra = {"CalibStridedMinMax": 2} if strided else {}
    quantize_static(str(tmp_path / "m.onnx"), str(tmp_path / "q.onnx"), SourceCalibrationReader(synthetic, "input"),
                    quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8, extra_options=extra)
    session = onnxruntime.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    quantized = session.run(None, {"input": synthetic.inputs.numpy()})[0]
    with torch.no_grad():
        reference = teacher(synthetic.inputs).numpy()
    assert np.abs(quantized - reference).max() < 0.1 * np.abs(reference).max()
