"""AMD Quark's reconstruction quantizers (AdaRound, AdaQuant) for ONNX models, fed by synthetic data.

Plain calibrators only measure ranges; AdaRound and AdaQuant fit each layer's rounding
(or its weights) to reproduce the float layer's outputs on the calibration images, which
is where the data decides at 4 bits. Quark takes an ONNX Runtime ``CalibrationDataReader``,
so in a Quark script only the reader changes:

    from fastdfkd_plugin.adapters.onnxruntime import calibration_reader

    calibration = get_source("fastdfkd", teacher).synthetic_set(256)
    ModelQuantizer(config).quantize_model("model.onnx", "model.q.onnx", calibration_reader("model.onnx", calibration))

or one call: ``quantize_datafree(..., reconstruction="adaround")``, also
``fastdfkd quantize-onnx --reconstruction adaround``.

Quark 0.13 has no 4-bit ONNX types: ``int4`` weights and ``uint4`` activations are
quantized on a 16-level grid held in 8-bit QDQ tensors (Quark's integer ranges narrowed
while it runs), the same numbers a 4-bit model computes, stored in 8 bits.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import FastDFKDError
from ..runtime.io import working_folder
from ..runtime.optional import require

RECONSTRUCTIONS = {"adaround": "AdaRoundConfig", "adaquant": "AdaQuantConfig"}
WEIGHT_TYPES = ("int8", "int4")
ACTIVATION_TYPES = ("uint8", "uint4")
# Integer range of an 8-bit type narrowed to 16 levels: (full, symmetric) for int8 weights, full for uint8 activations.
INT4_IN_INT8 = ((-8, 7), (-7, 7))
UINT4_IN_UINT8 = (0, 15)


def quark_onnx() -> Any:
    """``quark.onnx``, or one sentence naming the extra that installs it."""
    return require("quark.onnx", "quark", "AMD Quark")


@contextlib.contextmanager
def narrowed_integer_ranges(weight_type: str, activation_type: str) -> Iterator[None]:
    """Quark's 8-bit integer ranges cut to 4-bit ones while it quantizes (for its calibrators and its fine-tuning clamp)."""
    from onnx import TensorProto
    from quark.onnx.algorithm.finetuning.create_torch.create_model_utils import ONNXModelParser
    from quark.onnx.quantization import quant_utils

    ranges, symmetric = quant_utils.ONNX_INT_TYPE_RANGE, quant_utils.ONNX_INT_TYPE_SYMMETRIC_RANGE
    saved_ranges, saved_symmetric, original = dict(ranges), dict(symmetric), ONNXModelParser._dtype_to_qrange
    narrowed = {}
    if weight_type == "int4":
        (low, high), (sym_low, sym_high) = INT4_IN_INT8
        ranges[TensorProto.INT8] = (np.array(low, np.int8), np.array(high, np.int8))
        symmetric[TensorProto.INT8] = (np.array(sym_low, np.int8), np.array(sym_high, np.int8))
        narrowed[TensorProto.INT8] = (sym_low, sym_high)
    if activation_type == "uint4":
        ranges[TensorProto.UINT8] = tuple(np.array(value, np.uint8) for value in UINT4_IN_UINT8)
        narrowed[TensorProto.UINT8] = UINT4_IN_UINT8
    ONNXModelParser._dtype_to_qrange = lambda parser: {**original(parser), **narrowed}
    try:
        yield
    finally:
        ranges.update(saved_ranges)
        symmetric.update(saved_symmetric)
        ONNXModelParser._dtype_to_qrange = original


def reconstruction_config(
    method: str | None,
    *,
    weight_type: str = "int8",
    activation_type: str = "uint8",
    calibrate_method: str = "minmax",
    per_channel: bool = True,
    iterations: int | None = None,
    learning_rate: float | None = None,
    batch_size: int = 8,
) -> Any:
    """Quark's ``QConfig``: symmetric weights (per channel or per tensor), asymmetric activations, one reconstruction.

    ``method=None`` is Quark's calibration alone: the baseline that tells what reconstruction
    adds apart from how Quark quantizes.
    """
    quark = quark_onnx()
    if method is not None and method not in RECONSTRUCTIONS:
        raise FastDFKDError(f"unknown reconstruction {method!r}; choose one of {', '.join(RECONSTRUCTIONS)}")
    if weight_type not in WEIGHT_TYPES or activation_type not in ACTIVATION_TYPES:
        raise FastDFKDError(f"Quark's reconstruction takes weights {' or '.join(WEIGHT_TYPES)} and activations "
                            f"{' or '.join(ACTIVATION_TYPES)}, not {weight_type}/{activation_type}; choose from those")
    methods = {name.lower(): member for name, member in quark.CalibMethod.__members__.items()}  # Quark's, by the CLI's names
    if calibrate_method not in methods:
        raise FastDFKDError(f"unknown calibration method {calibrate_method!r}; choose one of {', '.join(methods)}")
    granularity = quark.QuantGranularity.Channel if per_channel else quark.QuantGranularity.Tensor
    layer = quark.QLayerConfig(
        input_tensors=quark.UInt8Spec(calibration_method=methods[calibrate_method]),
        weight=quark.Int8Spec(calibration_method=quark.CalibMethod.MinMax, quant_granularity=granularity),
    )
    tuning = {"batch_size": batch_size, "optim_device": "cpu", "infer_device": "cpu"}
    if iterations is not None:
        tuning["num_iterations"] = iterations
    if learning_rate is not None:
        tuning["learning_rate"] = learning_rate
    algorithms = [] if method is None else [getattr(quark, RECONSTRUCTIONS[method])(**tuning)]
    return quark.QConfig(global_config=layer, algo_config=algorithms)


def quantize_reconstructed(model: str | Path, output: str | Path, reader: Any, method: str | None = "adaround",
                           **config: Any) -> None:
    """Quantize the ONNX ``model`` into ``output`` with Quark's ``method``, calibrated and fitted on ``reader``'s batches.

    ``config`` goes to :func:`reconstruction_config` (types, calibrator, per-channel,
    iterations, learning rate, batch size). Quark reads the whole reader once and keeps it.
    """
    quark = quark_onnx()
    settings = reconstruction_config(method, **config)
    model, output = Path(model).resolve(), Path(output).resolve()
    with tempfile.TemporaryDirectory(prefix="fastdfkd-quark-") as workdir, working_folder(workdir), \
            narrowed_integer_ranges(config.get("weight_type", "int8"), config.get("activation_type", "uint8")):
        quark.ModelQuantizer(settings).quantize_model(str(model), str(output), reader)
    if not output.exists() or output.stat().st_size == 0:
        raise FastDFKDError(f"Quark wrote no model to {output}; its log above says why")
