"""Brevitas' GPTQ for PyTorch models, fed by synthetic data: the PyTorch-side reconstruction quantizer.

A plain calibrator only measures ranges. GPTQ rounds each layer's weights one input
column at a time and pushes every rounding error onto the columns not yet rounded,
weighted by the layer's input covariance on the calibration images, so at 4 bits the
data decides. In a Brevitas script only the calibration batches change:

    calibration = calibration_data(get_source("fastdfkd", teacher), num_samples=256)   # adapters.generic
    with torch.no_grad(), calibration_mode(quant_model):
        calibration.forward_loop(quant_model)
    with torch.no_grad(), gptq_mode(quant_model) as gptq:
        for _ in range(gptq.num_layers):
            calibration.forward_loop(gptq.model)
            gptq.update()

or one call: :func:`quantize_datafree`, also ``fastdfkd quantize-brevitas``. Brevitas is
imported only when used (``pip install 'fastdfkd-plugin[brevitas]'``); it needs no
torchvision and keeps the torch you have.
"""

from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..cli.options import add_evaluate_arguments, add_model_arguments, load_teacher, report_fidelity
from ..errors import FastDFKDError, reason
from ..hooks.hookspecs import hookimpl
from ..runtime.io import atomic_path
from ..runtime.optional import require
from ..teacher.teacher import Teacher, model_device
from .generic import CalibrationInput, add_calibration_arguments, calibration_data, calibration_from_args

METHODS = ("gptq", "none")
BIT_WIDTHS = range(2, 9)


def brevitas_graph() -> tuple[Any, Any, Any]:
    """Brevitas' ``quantize``, ``calibrate`` and ``gptq`` graph modules, or one sentence naming the extra."""
    return tuple(require(f"brevitas.graph.{name}", "brevitas", "Brevitas") for name in ("quantize", "calibrate", "gptq"))


def layer_maps(weight_bits: int, activation_bits: int) -> dict[str, dict]:
    """Brevitas' default layer maps at these bit widths, as ``quantize(**layer_maps(...))`` takes them.

    Weights are per-channel with a scale fixed once from the weights (GPTQ must round
    against a grid that does not move as it edits them); activations per-tensor with
    Brevitas' percentile statistics. Layers pass plain tensors, not QuantTensors, so
    ordinary tensor code between layers (indexing, padding) keeps working; every
    activation is still fake-quantized, and biases stay in float (an int32 bias needs
    the QuantTensor's input scale).
    """
    quantize, _, _ = brevitas_graph()
    from brevitas.core.scaling.standalone import ParameterFromStatsFromParameterScaling
    from brevitas.quant.scaled_int import Int8WeightPerChannelFloat

    weight_quant = Int8WeightPerChannelFloat.let(bit_width=weight_bits, scaling_impl=ParameterFromStatsFromParameterScaling)
    plain = {"return_quant_tensor": False}

    def with_activation_bits(entry: tuple) -> tuple:
        layer, options = entry
        return layer, {**options, **plain, "act_quant": options["act_quant"].let(bit_width=activation_bits)}

    compute = {kind: (entry[0], {**entry[1], **plain, "weight_quant": weight_quant, "bias_quant": None})
               if entry is not None and "weight_quant" in entry[1] else entry
               for kind, entry in quantize.COMPUTE_LAYER_MAP.items()}
    return {"compute_layer_map": compute,
            "quant_act_map": {kind: with_activation_bits(entry) for kind, entry in quantize.QUANT_ACT_MAP.items()},
            "quant_identity_map": {kind: with_activation_bits(entry) for kind, entry in quantize.QUANT_IDENTITY_MAP.items()}}


def _check_bits(name: str, bits: int) -> None:
    if bits not in BIT_WIDTHS:
        raise FastDFKDError(f"{name} must be between {BIT_WIDTHS.start} and {BIT_WIDTHS.stop - 1} bits, not {bits}")


def quantize_datafree(
    model: Teacher | nn.Module,
    data: CalibrationInput,
    *,
    weight_bits: int = 4,
    activation_bits: int = 8,
    method: str = "gptq",
    num_samples: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> nn.Module:
    """A fake-quantized Brevitas copy of ``model``: calibrated on ``data``, then GPTQ-rounded (``method="gptq"``).

    ``data`` is a source (give ``num_samples``), a synthetic set, a tensor or batches
    (see :func:`~fastdfkd_plugin.adapters.generic.calibration_data`). ``method="none"``
    stops after calibration (round to nearest). The teacher is not modified. A model
    torch.fx cannot trace raises :class:`FastDFKDError` pointing at the ONNX path.
    """
    _check_bits("weight_bits", weight_bits)
    _check_bits("activation_bits", activation_bits)
    if method not in METHODS:
        raise FastDFKDError(f"unknown Brevitas method {method!r}; choose one of {', '.join(METHODS)}")
    quantize, calibrate, gptq = brevitas_graph()
    calibration = calibration_data(data, num_samples, batch_size)
    model = copy.deepcopy(model.model if isinstance(model, Teacher) else model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Brevitas warns about every optional kernel package it lacks
        try:
            graph = quantize.preprocess_for_quantize(model)
        except Exception as exc:  # torch.fx raises many exception types for code it cannot trace
            raise FastDFKDError(
                f"Brevitas cannot trace the model with torch.fx ({reason(exc)}); quantize it "
                "through ONNX instead (`fastdfkd quantize-onnx --reconstruction adaround`)") from exc
        quantized = quantize.quantize(graph, **layer_maps(weight_bits, activation_bits))
        with torch.no_grad(), calibrate.calibration_mode(quantized):
            calibration.forward_loop(quantized)
        with torch.no_grad():  # one quantized batch fixes the weight scales from the weights
            quantized(calibration.batches[0].to(model_device(quantized)))
        if method == "gptq":
            with torch.no_grad(), gptq.gptq_mode(quantized, device=model_device(quantized)) as rounding:
                for _ in tqdm(range(rounding.num_layers), desc="GPTQ layers", disable=not progress):
                    calibration.forward_loop(rounding.model)
                    rounding.update()
    return quantized


def export_onnx(quantized: nn.Module, example: torch.Tensor, path: str | Path) -> None:
    """Save ``quantized`` as ONNX QCDQ (QuantizeLinear, Clip, DequantizeLinear), atomically; ONNX Runtime runs it.

    The batch dimension is dynamic. Uses torch's TorchScript exporter, as :mod:`.onnx_export` does: the
    dynamo exporter's opset conversion fails on some graphs (onnx 1.22). Needs ``onnxoptimizer`` (in the extra).
    """
    export = require("brevitas.export", "brevitas", "Brevitas")
    require("onnxoptimizer", "brevitas")
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export.export_onnx_qcdq(quantized, args=example.cpu(), export_path=str(tmp), input_names=["input"], output_names=["output"],
                                dynamo=False, dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


# -- CLI -----------------------------------------------------------------------------------------

def cmd_quantize_brevitas(args: argparse.Namespace) -> None:
    brevitas_graph()  # before any work: without Brevitas, one sentence naming the extra
    _check_bits("weight_bits", args.weight_bits)
    _check_bits("activation_bits", args.activation_bits)
    if Path(args.out).suffix != ".onnx":
        raise FastDFKDError(f"--out is written as ONNX QCDQ, so name it *.onnx, not {args.out}")
    teacher = load_teacher(args)
    calibration, source_name = calibration_from_args(args, teacher, args.activation_bits)
    quantized = quantize_datafree(teacher, calibration, weight_bits=args.weight_bits,
                                  activation_bits=args.activation_bits, method=args.method, progress=not args.quiet)
    export_onnx(quantized.cpu(), calibration.batches[0][:1], args.out)
    print(f"calibrated on {calibration.num_samples} samples from {source_name}; W{args.weight_bits}A{args.activation_bits} "
          f"({'GPTQ' if args.method == 'gptq' else 'round to nearest'}, per-channel weights) -> {args.out}")
    report_fidelity(args, teacher, quantized.to(teacher.device), "try more activation bits (--activation-bits 8), GPTQ "
                    "(--method gptq) or more weight bits", teacher.output_transform)


@hookimpl
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    quant = subparsers.add_parser("quantize-brevitas", help="Brevitas GPTQ (PyTorch) calibrated on synthetic data, saved as ONNX QCDQ")
    add_model_arguments(quant)
    add_calibration_arguments(quant, default_samples=256)
    quant.add_argument("--weight-bits", type=int, default=4, help="weight bit width, 2-8 (default 4)")
    quant.add_argument("--activation-bits", type=int, default=8, help="activation bit width, 2-8 (default 8)")
    quant.add_argument("--method", default="gptq", choices=METHODS,
                       help="gptq: fit the rounding to the calibration images (default); none: round to nearest")
    quant.add_argument("--out", required=True, help="the quantized model, ONNX QCDQ (.onnx)")
    add_evaluate_arguments(quant)
    quant.set_defaults(run=cmd_quantize_brevitas)
