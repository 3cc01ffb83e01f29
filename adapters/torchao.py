"""PyTorch-native static quantization (torchao PT2E), calibrated on synthetic data.

In an existing PT2E script, only the calibration loop changes:

    prepared = prepare_pt2e(torch.export.export(model.eval(), (example,)).module(), quantizer)
    calibration_data(source, num_samples=512).forward_loop(prepared)   # from fastdfkd_plugin.adapters.generic
    quantized = convert_pt2e(prepared)

or everything in one call: :func:`quantize_pt2e_datafree`. torchao is imported only
when used (``pip install 'fastdfkd-plugin[torchao]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cli.options import add_evaluate_arguments, add_model_arguments, load_teacher, report_fidelity
from ..errors import FastDFKDError
from ..hooks.hookspecs import hookimpl
from ..runtime.io import atomic_path
from ..runtime.optional import require
from ..teacher.teacher import Teacher, model_device
from .generic import CalibrationInput, add_calibration_arguments, calibration_data, calibration_from_args

QUANTIZERS = ("x86",)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hold back torch's and torchao's logging and stderr output, replaying stderr only on success.

    A failed ``torch.export`` prints partial graphs; its error becomes one sentence
    instead. Importing torchao warns about every CUDA kernel library a CPU machine lacks.
    """
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        logging.disable(previous)
    sys.stderr.write(captured.getvalue())


def _pt2e() -> tuple[Any, Any]:
    """torchao's ``quantize_pt2e`` and X86 quantizer modules, imported on first use."""
    with _quiet():
        return (require("torchao.quantization.pt2e.quantize_pt2e", "torchao", "torchao"),
                require("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer", "torchao", "torchao"))


def default_quantizer(per_channel: bool = True, reduce_range: bool = False) -> Any:
    """``X86InductorQuantizer`` with its default static config: int8 weights, uint8 activations.

    ``per_channel=False`` swaps the per-channel weight observer for a per-tensor
    symmetric one (the quantizer itself only offers per-channel). ``reduce_range``
    is the quantizer's own 7-bit activation option for CPUs without VNNI.
    """
    _, x86 = _pt2e()
    config = x86.get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
    if not per_channel:
        from torchao.quantization.pt2e import MinMaxObserver

        weight = dataclasses.replace(config.weight, qscheme=torch.per_tensor_symmetric, ch_axis=None,
                                     observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = dataclasses.replace(config, weight=weight)
    return x86.X86InductorQuantizer().set_global(config)


def _export(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` with the batch dimension dynamic wherever the model allows it."""
    try:
        with _quiet():
            return torch.export.export(model, (example.to(model_device(model)),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    except Exception as exc:  # torch.export raises many exception types for code it cannot capture
        raise FastDFKDError(
            f"torch.export cannot capture the model ({_first_useful_line(exc)}); quantize it through ONNX instead "
            "(`fastdfkd quantize-onnx`, or fastdfkd_plugin.adapters.onnxruntime.quantize_datafree)"
        ) from exc


def _first_useful_line(exc: Exception) -> str:
    """The message's first non-blank line and, when torch names it, the user's line that failed."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    text = lines[0][:200]
    for index, line in enumerate(lines[:-1]):
        if line.startswith("The following call raised this error"):
            text += f" at {lines[index + 1]}: {lines[index + 2]}" if index + 2 < len(lines) else ""
            break
    return text


def quantize_pt2e_datafree(
    model: Teacher | nn.Module,
    data: CalibrationInput,
    quantizer: Any = None,
    *,
    num_samples: int | None = None,
    batch_size: int | None = None,
) -> torch.fx.GraphModule:
    """Export, ``prepare_pt2e``, calibrate on ``data`` and ``convert_pt2e``; returns the quantized module.

    ``data`` is a source (give ``num_samples``), a synthetic set, a tensor or batches
    (see :func:`calibration_data`). ``quantizer`` goes to ``prepare_pt2e`` unchanged
    (default: :func:`default_quantizer`). The result is torchao's reference quantized
    module (quantize/dequantize around float ops); ``torch.compile`` lowers it to int8
    kernels. ``model`` itself is not modified: an eval-mode copy is exported, with the
    batch dimension dynamic unless the model fixes it (then calibration runs in batches
    of that size, see :meth:`CalibrationData.forward_loop`). A model torch.export cannot
    capture raises :class:`FastDFKDError` with the export error's first line.
    """
    quantize_pt2e, _ = _pt2e()
    calibration = calibration_data(data, num_samples, batch_size)
    model = model.model if isinstance(model, Teacher) else model
    program = _export(copy.deepcopy(model).eval(), calibration.batches[0])
    prepared = quantize_pt2e.prepare_pt2e(program.module(), quantizer if quantizer is not None else default_quantizer())
    calibration.forward_loop(prepared)
    return quantize_pt2e.convert_pt2e(prepared)


def save_quantized(quantized: torch.fx.GraphModule, example: torch.Tensor, path: str | Path) -> None:
    """Save with ``torch.export.save``, atomically, keeping a dynamic batch dimension.

    Load it back with :func:`load_quantized`.
    """
    _check_pt2(path)
    program = _export(quantized, example)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.export.save(program, handle)


def load_quantized(path: str | Path) -> torch.nn.Module:
    """The module saved by :func:`save_quantized` (or ``fastdfkd quantize-torch``), ready to run or ``torch.compile``.

    Registers torchao's quantize/dequantize ops first, which a bare ``torch.export.load`` lacks.
    """
    _pt2e()
    _check_pt2(path)
    if not Path(path).is_file():
        raise FastDFKDError(f"quantized program {path} does not exist; write one with `fastdfkd quantize-torch --out {path}`")
    return torch.export.load(str(path)).module()


def _check_pt2(path: str | Path) -> None:
    if Path(path).suffix != ".pt2":
        raise FastDFKDError(f"torch.export.load reads only files ending in .pt2, so {path} would not load back; name it *.pt2")


# -- CLI -----------------------------------------------------------------------------------------

def cmd_quantize_torch(args: argparse.Namespace) -> None:
    _pt2e()
    _check_pt2(args.out)
    teacher = load_teacher(args)
    calibration, source_name = calibration_from_args(args, teacher, 8)  # PT2E quantizes activations to int8
    quantizer = default_quantizer(per_channel=not args.per_tensor, reduce_range=args.reduce_range)
    model = teacher.model if teacher.device.type == "cpu" else copy.deepcopy(teacher.model).cpu()  # X86 targets the CPU
    quantized = quantize_pt2e_datafree(model, calibration, quantizer)
    save_quantized(quantized, calibration.batches[0], args.out)
    weights = "per-tensor" if args.per_tensor else "per-channel"
    print(f"calibrated on {calibration.num_samples} samples from {source_name}; quantized ({args.quantizer}: int8 {weights} "
          f"weights, {'u7' if args.reduce_range else 'u8'} activations) -> {args.out}; load it with "
          f"fastdfkd_plugin.adapters.torchao.load_quantized({str(args.out)!r})")
    report_fidelity(args, teacher, quantized, "calibrate on more samples (--num-samples) or quantize with per-channel "
                    "weights; PT2E has no float fallback per layer, so a sensitive model may need quantize-onnx",
                    teacher.output_transform)


@hookimpl
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    quant = subparsers.add_parser("quantize-torch", help="torchao PT2E static quantization calibrated on synthetic data")
    add_model_arguments(quant)
    add_calibration_arguments(quant, default_samples=512)
    quant.add_argument("--quantizer", default="x86", choices=QUANTIZERS, help="X86InductorQuantizer (int8 weights, uint8 activations)")
    quant.add_argument("--per-tensor", action="store_true", help="per-tensor weights instead of the quantizer's per-channel default")
    quant.add_argument("--reduce-range", action="store_true", help="7-bit activations, for CPUs without VNNI")
    quant.add_argument("--out", required=True, help="the quantized program (.pt2, torch.export.save format)")
    add_evaluate_arguments(quant)
    quant.set_defaults(run=cmd_quantize_torch)
