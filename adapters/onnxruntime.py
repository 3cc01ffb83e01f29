"""ONNX Runtime static quantization calibrated on synthetic data.

In an existing ONNX Runtime script, only the reader changes:

    from fastdfkd_plugin import get_source
    from fastdfkd_plugin.adapters.onnxruntime import calibration_reader

    calibration = get_source("fastdfkd", teacher, (3, 32, 32), mean=MEAN, std=STD).synthetic_set(512)
    quantize_static("model.onnx", "model.qdq.onnx", calibration_reader("model.onnx", calibration), ...)

or everything in one call (export, a check against torch, pre-processing, quantization):
:func:`quantize_datafree`, also ``fastdfkd quantize-onnx``. Export and its verification
live in :mod:`fastdfkd_plugin.adapters.onnx_export`. onnx and onnxruntime (or
onnxruntime-gpu) are imported only when used.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..cli.options import add_model_arguments, load_teacher, require_normalisation, source_options
from ..errors import FastDFKDError, reason
from ..hooks.argtypes import positive, positive_float
from ..hooks.hookspecs import hookimpl
from ..runtime.io import atomic_path, check_disk_space
from ..runtime.optional import require
from ..sources.base import SyntheticSet
from ..sources.calibration import calibration_source_options
from ..sources.registry import get_source
from ..teacher.onnx.graph import OnnxModule, check_input_shape, onnx_input, ort_runtime, static_input_shape
from ..teacher.onnx.operators import onnx_package
from ..teacher.teacher import Teacher
from .generic import (
    DEFAULT_BATCH_SIZE,
    CalibrationInput,
    add_calibration_arguments,
    calibration_data,
    load_inputs,
    whole_batches,
)
from .onnx_export import Verification, export_onnx, verify_onnx
from .quark import RECONSTRUCTIONS, quantize_reconstructed

log = logging.getLogger(__name__)

# The first onnxruntime release whose quantization tool has each type.
MIN_ORT_VERSION = {"int16": "1.17", "uint16": "1.17", "int4": "1.18", "uint4": "1.18"}
QUANT_TYPES = {"int8": "QInt8", "uint8": "QUInt8", "int16": "QInt16", "uint16": "QUInt16", "int4": "QInt4", "uint4": "QUInt4"}
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy", "distribution": "Distribution"}
QUANT_FORMATS = {"qdq": "QDQ", "qoperator": "QOperator"}
# The quantize_static options the command line gives by name: ONNX Runtime's enum for each, and the names it takes.
NAMED_OPTIONS = {"weight_type": ("QuantType", QUANT_TYPES), "activation_type": ("QuantType", QUANT_TYPES),
                 "calibrate_method": ("CalibrationMethod", CALIBRATION_METHODS), "quant_format": ("QuantFormat", QUANT_FORMATS)}
# Calibration sets larger than this are synthesised into a memory-mapped file, not RAM.
IN_MEMORY_LIMIT_BYTES = 1 << 30


def ort_quantization() -> Any:
    """``onnxruntime.quantization``, or one sentence naming the extra that installs it."""
    return require("onnxruntime.quantization", "onnxruntime", "ONNX Runtime", note=" (or [onnxruntime-gpu], never both)")


# -- the calibration reader ------------------------------------------------------------------------

@functools.cache
def make_reader_class() -> type:
    """The reader subclasses ONNX Runtime's ``CalibrationDataReader``, so it is built once, on first use."""

    class ArrayCalibrationReader(ort_quantization().CalibrationDataReader):
        """Feeds fixed batches of one array (in memory or memory-mapped from disk) to ONNX Runtime.

        Deterministic and replayable: ``rewind`` restarts, ``__len__`` counts batches and
        ``set_range(start, end)`` restricts them, which ONNX Runtime's strided calibration
        (``extra_options={"CalibStridedMinMax": n}``) needs.
        """

        def __init__(self, inputs: np.ndarray, input_name: str, batch_size: int = 64) -> None:
            if len(inputs) == 0:
                raise FastDFKDError("the calibration set is empty; synthesise at least one sample")
            self.inputs, self.input_name, self.batch_size = inputs, input_name, batch_size
            self.set_range(0, len(self))

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._position >= self._end:
                return None
            start = self._position * self.batch_size
            self._position += 1
            return {self.input_name: np.ascontiguousarray(self.inputs[start : start + self.batch_size], dtype=np.float32)}

        def rewind(self) -> None:
            self._position = self._start

        def __len__(self) -> int:
            return -(-len(self.inputs) // self.batch_size)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._start, self._end = start_index, min(end_index, len(self))
            self.rewind()

    return ArrayCalibrationReader


def calibration_array(data: CalibrationInput, num_samples: int | None = None,
                      batch_size: int | None = None) -> tuple[np.ndarray, int]:
    """(inputs as one array, batch size): an array or ``.npy`` path as it is (memory-mapped), anything else
    through :func:`~fastdfkd_plugin.adapters.generic.calibration_data` (which knows the data's own batch size)."""
    if isinstance(data, np.ndarray) or (isinstance(data, (str, Path)) and Path(data).suffix == ".npy"):
        inputs = load_inputs(data, mmap=True) if isinstance(data, (str, Path)) else data
        return inputs[:num_samples], batch_size or DEFAULT_BATCH_SIZE
    calibration = calibration_data(data, num_samples, batch_size)
    return calibration.inputs.detach().cpu().numpy(), len(calibration.batches[0])


def calibration_reader(
    model_path: str | Path, data: CalibrationInput, batch_size: int | None = None, num_samples: int | None = None
) -> Any:
    """A ``CalibrationDataReader`` over ``data``, keyed by the ONNX model's input name.

    ``data`` is anything :func:`~fastdfkd_plugin.adapters.generic.calibration_data` takes
    (a set, a source with ``num_samples``, ``CalibrationData``, an array or tensor, an
    ``.npz`` path, batches from a ``DataLoader``); an array or a ``.npy`` path is read
    as it is, memory-mapped. A graph that fixes its batch size (``torch.onnx.export``
    without dynamic axes gives 1) gets batches of exactly that size; samples that do not
    fill a last batch are left out.
    """
    ort_quantization()
    model_input = onnx_input(model_path)
    inputs, batch_size = calibration_array(data, num_samples, batch_size)
    check_input_shape(model_input, inputs.shape[1:], model_path)
    fixed = model_input.shape[0] if model_input.shape else None
    if fixed is not None:
        inputs, batch_size = whole_batches(inputs, fixed, f"ONNX model {model_path}"), fixed
    return make_reader_class()(inputs, model_input.name, batch_size)


def synthesize_to_disk(source: Any, num_samples: int, batch_size: int, path: str | Path) -> np.ndarray:
    """Synthesise ``num_samples`` straight into a ``.npy`` file, batch by batch, and memory-map it.

    For calibration sets too large for RAM: only one batch is in memory at a time, and
    ONNX Runtime reads the file through the memory map.
    """
    path = Path(path)
    check_disk_space(path.parent, num_samples * 4 * math.prod(source.input_shape), f"a set of {num_samples} inputs",
                     "lower --num-samples or set TMPDIR to a larger disk")
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(num_samples, *source.input_shape))
        for start in range(0, num_samples, batch_size):
            batch = source.next_batch(min(batch_size, num_samples - start))
            array[start : start + len(batch.labels)] = batch.inputs.cpu().numpy()
        array.flush()
        del array
    return np.load(path, mmap_mode="r")


# -- one call: data-free static quantization -----------------------------------------------------------

@dataclass
class QuantizationReport:
    output: str
    calibration_samples: int
    calibration_source: str
    synthesis_seconds: float
    quantization_seconds: float
    agreement: Verification
    options: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ort_value(option: str, name: str) -> Any:
    """The ONNX Runtime value a command-line name stands for (``weight_type`` ``"int4"`` → ``QuantType.QInt4``),
    naming the ONNX Runtime release that has it when this one does not."""
    enum_name, names = NAMED_OPTIONS[option]
    enum, key = getattr(ort_quantization(), enum_name), name.lower()
    if key not in names:
        raise FastDFKDError(f"unknown {option} {name!r}; choose one of {', '.join(names)}")
    if not hasattr(enum, names[key]):
        raise FastDFKDError(f"{name} quantization needs onnxruntime ≥ {MIN_ORT_VERSION[key]}, but "
                            f"{ort_runtime().__version__} is installed; upgrade it")
    return getattr(enum, names[key])


def quantize_static_options(options: dict[str, Any]) -> dict[str, Any]:
    """``quantize_static`` options, those of :data:`NAMED_OPTIONS` also given by the CLI's names
    (``weight_type="int4"``, ``calibrate_method="percentile"``, ``quant_format="qdq"``)."""
    return {key: ort_value(key, value) if key in NAMED_OPTIONS and isinstance(value, str) else value
            for key, value in options.items()}


def activation_bits(activation_type: Any) -> int:
    """Bits of an activation type given as ONNX Runtime's ``QuantType`` or by the CLI's name (absent: ORT's default, uint8)."""
    return int(re.search(r"\d+", str(getattr(activation_type, "name", activation_type or "uint8"))).group())


def reconstruction_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The ``quantize_static`` options that carry over to Quark's reconstruction, refusing the others by name."""
    options = dict(options)
    if options.pop("quant_format", "qdq") not in ("qdq", "QDQ"):
        raise FastDFKDError("reconstruction writes QDQ models only; drop --quant-format qoperator")
    unsupported = sorted(set(options) - {"weight_type", "activation_type", "calibrate_method", "per_channel"})
    if unsupported:
        raise FastDFKDError(f"{', '.join(unsupported)} do not apply to Quark's reconstruction; drop them or quantize without it")
    return options


# Which input of each op ONNX Runtime quantizes as a weight, and the channel axis it uses for it (ConvTranspose's
# and an untransposed Gemm's outputs lie on axis 1; MatMul's right-hand (K, N) matrix too).
WEIGHT_AXES = {"Conv": lambda node: 0, "ConvTranspose": lambda node: 1, "MatMul": lambda node: 1,
               "Gemm": lambda node: 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1}


def symmetric_int4_weights(model: str | Path, per_channel: bool) -> dict[str, list[dict[str, Any]]]:
    """``TensorQuantOverrides`` that put every weight of ``model`` on the 4-bit grid [-7, 7], scale absmax / 7.

    ONNX Runtime's own symmetric int4 grid is [-8, 7] with scale absmax / 7.5, so each
    channel's largest positive weight rounds to 8 and is clipped to 7. On ResNet-20, W4A8
    from real images scored 70.96 % on that grid and 77.36 % on this one, Quark's and
    Brevitas' (docs/benchmarks/int4_grid_resnet20.md).
    """
    onnx = onnx_package()
    graph = onnx.load(str(model)).graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    overrides: dict[str, list[dict[str, Any]]] = {}
    for node in graph.node:
        if node.op_type not in WEIGHT_AXES or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        weight = onnx.numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        if per_channel:
            axis = WEIGHT_AXES[node.op_type](node)
            absmax = np.abs(np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)).max(1)
            overrides[node.input[1]] = [{"axis": axis, **_grid_of(value)} for value in absmax]
        else:
            overrides[node.input[1]] = [_grid_of(np.abs(weight).max())]
    return overrides


def _grid_of(absmax: float) -> dict[str, Any]:
    return {"scale": np.float32(absmax / 7 if absmax > 0 else 1.0), "zero_point": np.int8(0)}


def with_symmetric_int4_weights(model: str | Path, options: dict[str, Any]) -> dict[str, Any]:
    """``quantize_static`` options with int4 weights on [-7, 7] (:func:`symmetric_int4_weights`).

    Left as they are for other weight types and for asymmetric weights (``WeightSymmetric``
    False); a ``TensorQuantOverrides`` entry the caller gives for a weight wins over ours.
    """
    extra = dict(options.get("extra_options") or {})
    if options.get("weight_type") != ort_quantization().QuantType.QInt4 or not extra.get("WeightSymmetric", True):
        return options
    extra["TensorQuantOverrides"] = symmetric_int4_weights(model, options.get("per_channel", False)) | extra.get("TensorQuantOverrides", {})
    return options | {"extra_options": extra}


def calibration_providers() -> list[str]:
    """CUDA for calibration when onnxruntime-gpu is installed and sees a GPU, else CPU."""
    available = ort_runtime().get_available_providers()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in available and torch.cuda.is_available() else ["CPUExecutionProvider"]


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer prints advice through the root logger on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_datafree(
    teacher: Teacher | nn.Module | str | Path,
    output: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    onnx_model: str | Path | None = None,
    calibration: CalibrationInput | None = None,
    source: str = "fastdfkd",
    num_samples: int = 512,
    batch_size: int = 64,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
    device: str = "auto",
    source_options: dict[str, Any] | None = None,
    preprocess: bool = True,
    min_agreement: float = 99.0,
    progress: bool = False,
    reconstruction: str | None = None,
    reconstruction_options: dict[str, Any] | None = None,
    **quantize_options: Any,
) -> QuantizationReport:
    """Export (if needed), check, pre-process and statically quantize ``teacher`` with data-free calibration.

    ``teacher`` is a :class:`Teacher`, or a model with ``input_shape``, ``mean``, ``std``
    and ``device`` to build one. It may be an ONNX file (its path, or a Teacher of one):
    then that graph is what is quantized unless ``onnx_model`` names another.

    ``quantize_options`` go to ``onnxruntime.quantization.quantize_static`` (``quant_format``,
    ``per_channel``, ``weight_type``, ``activation_type``, ``calibrate_method``,
    ``nodes_to_exclude``, ``extra_options``, ...); the types, method and format may be
    given as ONNX Runtime's values or by the command line's names (``weight_type="int4"``,
    ``calibrate_method="minmax"``, ``quant_format="qdq"``). Symmetric int4 weights go on the grid
    [-7, 7] rather than ONNX Runtime's clipping [-8, 7] (:func:`symmetric_int4_weights`). Before quantizing, the ONNX model
    is run against the teacher on synthetic batches; disagreement (for example, other
    weights) stops here with a clear message.

    ``reconstruction`` (``"adaround"`` or ``"adaquant"``) quantizes with AMD Quark's
    reconstruction instead of ``quantize_static`` (:mod:`fastdfkd_plugin.adapters.quark`): then
    ``quantize_options`` are the types, ``calibrate_method`` and ``per_channel`` by name, and
    ``reconstruction_options`` its ``iterations``, ``learning_rate`` and ``batch_size``.
    """
    quantization = ort_quantization()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if reconstruction is None:
        quantize_options = quantize_static_options(quantize_options)
        quantize_options.setdefault("calibration_providers", calibration_providers())
    else:
        quantize_options = reconstruction_settings(quantize_options) | dict(reconstruction_options or {})
    teacher = Teacher.of(teacher, input_shape, mean=mean, std=std, device=device)
    input_shape = teacher.input_shape
    if onnx_model is None and isinstance(teacher.model, OnnxModule):
        onnx_model = teacher.model.source
    with tempfile.TemporaryDirectory(prefix="fastdfkd-ort-") as workdir:
        started = time.perf_counter()
        if calibration is None:
            # Reconstruction fits each layer's outputs on the set, so it keeps the source's own (faithful) images: W4A4
            # AdaRound from auto-calibration sets scored 13 points lower (docs/calibration_results.md#which-prior-for-calibration-sets).
            options = (dict(source_options or {}) if reconstruction else
                       calibration_source_options(source, activation_bits(quantize_options.get("activation_type")), teacher,
                                                  source_options))
            data_source = get_source(source, teacher, seed=seed, progress=progress, **options)
            if num_samples * int(np.prod(input_shape)) * 4 > IN_MEMORY_LIMIT_BYTES:
                calibration = synthesize_to_disk(data_source, num_samples, batch_size, Path(workdir) / "calibration.npy")
            else:
                calibration = data_source.synthetic_set(num_samples, batch_size)
            source_name = source
        elif isinstance(calibration, SyntheticSet):
            source_name = calibration.metadata["source"]
        else:
            source_name = str(calibration) if isinstance(calibration, (str, Path)) else f"the given {type(calibration).__name__}"
        inputs, _ = calibration_array(calibration)
        synthesis_seconds = time.perf_counter() - started
        if inputs.shape[1:] != input_shape:
            raise FastDFKDError(f"the calibration set holds inputs of shape {inputs.shape[1:]}, not {input_shape}; synthesise it for this model")

        fp32 = Path(workdir) / "model.onnx"
        if onnx_model is None:
            export_onnx(teacher, torch.from_numpy(np.array(inputs[:1])), fp32)
        else:
            check_input_shape(onnx_input(onnx_model), input_shape, onnx_model)
            shutil.copyfile(onnx_model, fp32)
        agreement = verify_onnx(teacher, fp32, [torch.from_numpy(np.array(inputs[i : i + batch_size])) for i in range(0, min(len(inputs), 4 * batch_size), batch_size)])
        if agreement.top1_agreement < min_agreement:
            raise FastDFKDError(
                f"the ONNX model and the teacher disagree on synthetic inputs (top-1 agreement {agreement.top1_agreement:.1f} %, "
                f"max relative error {agreement.max_rel_error:.3g}); they probably hold different weights: export the ONNX model "
                "from this teacher, or omit the ONNX file to let fastdfkd export it"
            )
        model_in = fp32
        if preprocess:
            model_in = Path(workdir) / "model.pre.onnx"
            with quiet_root_logger():
                try:
                    quant_pre_process(str(fp32), str(model_in))
                except Exception as exc:  # ORT's symbolic shape inference asserts on graphs it cannot follow (PaddleOCR's)
                    log.warning("ONNX Runtime's symbolic shape inference failed on the model (%s); pre-processing without it", reason(exc))
                    quant_pre_process(str(fp32), str(model_in), skip_symbolic_shape=True)
        started = time.perf_counter()
        with atomic_path(output) as tmp, quiet_root_logger():
            reader = calibration_reader(model_in, inputs, batch_size)
            if reconstruction is None:
                quantization.quantize_static(str(model_in), str(tmp), reader, **with_symmetric_int4_weights(model_in, quantize_options))
            else:
                quantize_reconstructed(model_in, tmp, reader, reconstruction, **quantize_options)
        return QuantizationReport(
            output=str(output), calibration_samples=len(inputs), calibration_source=source_name,
            synthesis_seconds=synthesis_seconds, quantization_seconds=time.perf_counter() - started, agreement=agreement,
            options={key: str(value) for key, value in quantize_options.items()},
        )


# -- CLI commands ---------------------------------------------------------------------------------

def _extra_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def cmd_quantize_onnx(args: argparse.Namespace) -> None:
    ort_quantization()  # before any work: without ONNX Runtime, one sentence naming the extra
    if args.calibration is None:
        require_normalisation(args)
    if args.model is None and args.onnx is None:
        raise FastDFKDError("quantize-onnx needs a model: pass --onnx model.onnx (the graph is then the teacher too) or --model SPEC")
    args.model = args.model or args.onnx
    teacher = load_teacher(args, input_shape=args.input_shape or (static_input_shape(onnx_input(args.onnx), args.onnx) if args.onnx else None))
    options = dict(quant_format=args.quant_format, per_channel=args.per_channel, weight_type=args.weight_type,
                   activation_type=args.activation_type, calibrate_method=args.calibrate_method)
    if args.exclude_node:
        options["nodes_to_exclude"] = args.exclude_node
    if args.op_types:
        options["op_types_to_quantize"] = [name.strip() for name in args.op_types.split(",") if name.strip()]
    if args.extra_option:
        options["extra_options"] = dict(args.extra_option)
    tuning = {key: value for key, value in (("iterations", args.iterations), ("learning_rate", args.learning_rate)) if value is not None}
    if tuning and args.reconstruction is None:
        raise FastDFKDError("--iterations and --learning-rate tune a reconstruction; add --reconstruction adaround or adaquant")
    report = quantize_datafree(
        teacher, args.out, onnx_model=args.onnx, calibration=args.calibration, source=args.source,
        num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed, source_options=source_options(args),
        preprocess=not args.no_preprocess, progress=not args.quiet,
        reconstruction=args.reconstruction, reconstruction_options=tuning, **options,
    )
    print(f"calibrated on {report.calibration_samples} samples from {report.calibration_source} "
          f"({report.synthesis_seconds:.1f} s), ONNX model agrees with the teacher on {report.agreement.top1_agreement:.1f} % of them")
    print(f"quantized ({args.weight_type} weights, {args.activation_type} activations, {args.calibrate_method}, "
          f"{args.quant_format}{', per-channel' if args.per_channel else ''}"
          f"{', ' + args.reconstruction + ' (AMD Quark)' if args.reconstruction else ''}) in {report.quantization_seconds:.1f} s -> {report.output}")


@hookimpl
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    quant = subparsers.add_parser("quantize-onnx", help="ONNX Runtime static quantization calibrated on synthetic data")
    quant.add_argument("--onnx", help="the FP32 ONNX model; alone, it is the teacher too (default: export it from --model)")
    add_model_arguments(quant, required=False)
    add_calibration_arguments(quant, default_samples=512)
    quant.add_argument("--out", required=True, help="the quantized ONNX model")
    quant.add_argument("--weight-type", default="int8", choices=sorted(QUANT_TYPES),
                       help="int4 weights go on the symmetric grid [-7, 7], not ONNX Runtime's [-8, 7] that clips each "
                            "channel's largest weight (--extra-option WeightSymmetric=false for asymmetric ones)")
    quant.add_argument("--activation-type", default="uint8", choices=sorted(QUANT_TYPES))
    quant.add_argument("--calibrate-method", default="minmax", choices=sorted(CALIBRATION_METHODS))
    quant.add_argument("--quant-format", default="qdq", choices=sorted(QUANT_FORMATS))
    quant.add_argument("--per-channel", action="store_true")
    quant.add_argument("--exclude-node", action="append", help="node name to leave in float (repeatable)")
    quant.add_argument("--op-types", help="quantize only these ONNX op types, e.g. MatMul,Gemm for a transformer "
                                          "(LayerNorm, Softmax and GELU stay in float; default: all the quantizer supports)")
    quant.add_argument("--extra-option", action="append", type=_extra_option, help="KEY=VALUE passed in extra_options (repeatable)")
    quant.add_argument("--no-preprocess", action="store_true", help="skip quant_pre_process (shape inference + optimisation)")
    quant.add_argument("--reconstruction", choices=sorted(RECONSTRUCTIONS),
                       help="fit each layer's rounding (adaround) or weights (adaquant) to the calibration images with "
                            "AMD Quark (extra [quark]) instead of ONNX Runtime's calibrators")
    quant.add_argument("--iterations", type=positive, help="reconstruction steps per layer (Quark's default: 1000 adaround, 3000 adaquant)")
    quant.add_argument("--learning-rate", type=positive_float, help="reconstruction learning rate (Quark's default: 0.1 adaround, 1e-5 adaquant)")
    quant.set_defaults(run=cmd_quantize_onnx)
