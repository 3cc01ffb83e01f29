"""NNCF post-training quantization calibrated on synthetic data.

``nncf.quantize`` takes the same ``nncf.Dataset`` for torch, torch.fx, ONNX and
OpenVINO models; only the dataset changes in an existing script:

    quantized = nncf.quantize(model, nncf_dataset(synthetic), subset_size=len(synthetic))

Items are single samples (batch dimension 1, NNCF's default), so ``subset_size``
counts samples. NNCF is imported only when used (``pip install 'fastdfkd-plugin[nncf]'``).
"""

from __future__ import annotations

from typing import Any

from ..errors import FastDFKDError
from ..runtime.optional import require
from ..teacher.onnx.graph import graph_input
from .generic import CalibrationInput, calibration_data


def _nncf() -> Any:
    return require("nncf", "nncf", "NNCF")


def nncf_dataset(data: CalibrationInput, *, num_samples: int | None = None, input_name: str | None = None) -> Any:
    """An ``nncf.Dataset`` of single samples: torch tensors, or ``{input_name: float32 array}`` for ONNX/OpenVINO models."""
    nncf = _nncf()
    samples = calibration_data(data, num_samples).inputs.split(1)
    if input_name is None:
        return nncf.Dataset(samples)
    return nncf.Dataset(samples, lambda sample: {input_name: sample.cpu().numpy()})


def quantize_nncf_datafree(
    model: Any,
    data: CalibrationInput,
    *,
    subset_size: int | None = None,
    num_samples: int | None = None,
    input_name: str | None = None,
    **quantize_options: Any,
) -> Any:
    """``nncf.quantize`` calibrated on every sample of ``data`` unless ``subset_size`` says fewer.

    NNCF itself only warns when ``subset_size`` (default 300) exceeds the data; here that
    is refused. For an ONNX ``ModelProto`` the input name is read from the graph.
    ``quantize_options`` (``preset``, ``target_device``, ``ignored_scope``, ...) go to
    ``nncf.quantize`` unchanged. NNCF returns a new model and leaves ``model`` as it was.
    """
    nncf = _nncf()
    calibration = calibration_data(data, num_samples)
    if subset_size is None:
        subset_size = calibration.num_samples
    if subset_size > calibration.num_samples:
        raise FastDFKDError(f"subset_size={subset_size} is larger than the {calibration.num_samples} calibration samples; "
                            "synthesise at least that many or lower subset_size")
    dataset = nncf_dataset(calibration, input_name=input_name or _onnx_input_name(model))
    return nncf.quantize(model, dataset, subset_size=subset_size, **quantize_options)


def _onnx_input_name(model: Any) -> str | None:
    """The single graph input of an ONNX ``ModelProto`` (``None`` for any other model)."""
    graph = getattr(model, "graph", None)
    if graph is None or not hasattr(graph, "initializer"):
        return None
    return graph_input(model).name
