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
import copy
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
from tqdm.auto import tqdm

from ..cli.options import (
    add_evaluate_arguments,
    add_model_arguments,
    load_teacher,
    print_fidelity,
    require_normalisation,
    source_options,
)
from ..errors import FastDFKDError, reason
from ..evaluation.compressed import OrtModel
from ..evaluation.fidelity import HELD_OUT_BATCH, HELD_OUT_SAMPLES, Fidelity, fidelity, held_out_options, held_out_set
from ..evaluation.metrics import require_matplotlib
from ..hooks.argtypes import non_negative, positive, positive_float
from ..hooks.hookspecs import hookimpl
from ..runtime.io import atomic_path, check_disk_space, working_folder
from ..runtime.memory import release_freed_memory
from ..runtime.optional import require
from ..sources.base import SyntheticSet
from ..sources.calibration import calibration_source_options
from ..sources.memory_plan import plan_memory
from ..sources.registry import get_source
from ..teacher.onnx.graph import OnnxModule, check_input_shape, model_opset, onnx_input, ort_runtime, static_input_shape
from ..teacher.onnx.operators import onnx_package
from ..teacher.teacher import Teacher
from .equalization import EqualizedPair, equalize_depthwise_inputs
from .generic import (
    DEFAULT_BATCH_SIZE,
    CalibrationInput,
    add_calibration_arguments,
    calibration_data,
    load_inputs,
    whole_batches,
)
from .mixed_precision import WEIGHT_AXES, has_four_bits, with_nodes_at_8_bits
from .onnx_export import Verification, export_onnx, verify_onnx
from .quark import RECONSTRUCTIONS, quantize_reconstructed
from .range_groups import RANGE_GROUP, group_batch, write_grouped_minmax_ranges

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
PER_CHANNEL_OPSET = 13  # DequantizeLinear's axis, which per-channel QDQ weights need, came with opset 13
CHECK_SAMPLES, CHECK_BATCH = 32, 8  # random inputs the ONNX model is checked on against the teacher, and their largest batch


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
    release_freed_memory()  # as SyntheticSet's synthesis does: what runs next must not grow beside the kept heap
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
    fidelity: Fidelity | None = None  # the accuracy kept, estimated on held-out synthetic inputs (None: not evaluated)
    kept: list[NodeSensitivity] = field(default_factory=list)  # what the fallback kept out of the lowest precision, most damaging first
    kept_as: str | None = None  # where the fallback kept them: "float" or "8-bit" (None: no fallback asked for)
    sensitivity: list[NodeSensitivity] = field(default_factory=list)  # every candidate node, most damaging first
    searched: list[tuple[str, float]] = field(default_factory=list)  # (settings, estimate on the selection set) per candidate
    equalized: list[EqualizedPair] = field(default_factory=list)  # the depthwise convolutions whose input channels were rescaled

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


def upgrade_opset(path: str | Path, label: str | Path, opset: int = PER_CHANNEL_OPSET) -> None:
    """Rewrite the ONNX model at ``path`` at ``opset`` where it is older, with onnx's version converter.

    ONNX Runtime writes per-channel DequantizeLinear nodes (their ``axis`` came with opset 13)
    into the model's own opset, so per-channel quantization of an older graph (PaddleOCR's
    are opset 11 and 12) gives a model it refuses to load.
    """
    onnx = onnx_package()
    model = onnx.load(str(path))
    current = model_opset(model)
    if current >= opset:
        return
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, opset)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter and the checker raise their own exception types
        raise FastDFKDError(f"{label} is at opset {current} and per-channel quantization needs opset {opset}, which onnx's "
                            f"version converter cannot reach ({reason(exc)}); convert the model to opset {opset} yourself "
                            "or quantize per tensor (drop --per-channel)") from exc
    onnx.save(converted, str(path))


def checked_onnx_model(teacher: Teacher, onnx_model: str | Path | None, path: Path, *, per_channel: bool, seed: int,
                       batch_size: int, min_agreement: float, rtol: float) -> Verification:
    """The graph to quantize, written to ``path`` and checked against the teacher on a few random inputs.

    Exported from the teacher, or ``onnx_model`` copied (its input shape checked, moved to
    opset 13 for per-channel weights). Everything here can refuse the work, so it runs
    before synthesis, which takes minutes (PP-OCRv4's detector was refused after 18 of
    them). Class scores must agree on the top-1 (``min_agreement`` %), other outputs
    (probability maps, detection heads) match within ``rtol`` of the largest output.
    """
    fixed_batch = None
    if onnx_model is not None:
        model_input = onnx_input(onnx_model)
        check_input_shape(model_input, teacher.input_shape, onnx_model)
        fixed_batch = model_input.shape[0]
    pixels = torch.rand((max(CHECK_SAMPLES, fixed_batch or 0), *teacher.input_shape), generator=torch.Generator().manual_seed(seed))
    inputs = teacher.space.normalize(pixels.to(teacher.device))
    if onnx_model is None:
        export_onnx(teacher, inputs[:1], path)
    else:
        shutil.copyfile(onnx_model, path)
        if per_channel:
            upgrade_opset(path, onnx_model)
    verification = verify_onnx(teacher, path, list(inputs.split(min(batch_size, CHECK_BATCH))))
    if verification.top1_agreement is not None:
        agrees, limit = verification.top1_agreement >= min_agreement, f"below {min_agreement:g} %"
    else:
        agrees, limit = verification.max_rel_error <= rtol, f"above {rtol:g}"
    if not agrees:
        fix = ("look for data-dependent control flow or unsupported ops, or pass an ONNX file exported by hand" if onnx_model is None
               else "they probably hold different weights: export the ONNX model from this teacher, or omit the ONNX file "
                    "to let fastdfkd export it")
        raise FastDFKDError(f"the ONNX model and the teacher disagree on {verification.samples} random inputs "
                            f"({verification.summary()}, {limit}); {fix}")
    return verification


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
    rtol: float = 1e-3,
    progress: bool = False,
    reconstruction: str | None = None,
    reconstruction_options: dict[str, Any] | None = None,
    evaluate: bool = True,
    accuracy_target: float | None = None,
    sensitivity: bool = False,
    search: bool = False,
    held_out_samples: int = HELD_OUT_SAMPLES,
    memory_plan: bool = True,
    memory_budget: int | None = None,
    equalize: bool = True,
    range_group: int = RANGE_GROUP,
    fallback: str = "auto",
    nodes_at_8_bits: Sequence[str] = (),
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
    [-7, 7] rather than ONNX Runtime's clipping [-8, 7] (:func:`symmetric_int4_weights`). Before any synthesis, the
    ONNX model is run against the teacher on a few random inputs (:func:`checked_onnx_model`): class
    scores must agree on the top-1 (``min_agreement`` %), other outputs match within ``rtol``
    of the largest one; disagreement (for example, other weights) stops there with a clear message.
    Per-channel quantization moves a graph older than opset 13 to opset 13 first (:func:`upgrade_opset`), and
    (``equalize``) rescales the channels each depthwise convolution reads from the convolution before it to one range,
    measured on the calibration inputs, which the float model does not notice and per-tensor activations need
    (:func:`~fastdfkd_plugin.adapters.equalization.equalize_depthwise_inputs`; ``report.equalized``).
    MinMax ranges are the mean over groups of ``range_group`` calibration inputs of each group's extremes, which
    do not grow with the set as the whole set's do (:mod:`~fastdfkd_plugin.adapters.range_groups`); ``range_group=0``
    (or ONNX Runtime's own ``CalibMovingAverage`` in ``extra_options``) takes ONNX Runtime's MinMax as it is.

    ``reconstruction`` (``"adaround"`` or ``"adaquant"``) quantizes with AMD Quark's
    reconstruction instead of ``quantize_static`` (:mod:`fastdfkd_plugin.adapters.quark`): then
    ``quantize_options`` are the types, ``calibrate_method`` and ``per_channel`` by name, and
    ``reconstruction_options`` its ``iterations``, ``learning_rate`` and ``batch_size``.

    ``evaluate`` judges the quantized graph on ``held_out_samples`` held-out synthetic inputs
    (:func:`~fastdfkd_plugin.fidelity`; ``report.fidelity``). ``sensitivity`` ranks every
    Conv/MatMul/Gemm node by what quantizing it alone costs (``report.sensitivity``), and
    ``accuracy_target`` (percent of the teacher's accuracy) then keeps the fewest most damaging
    of them out of the lowest precision until the estimate reaches it (``report.kept``): in float, or at 8 bits
    (``fallback``; ``"auto"``: at 8 bits inside a model with 4-bit weights or activations, where they still run integer
    kernels, else in float; ``report.kept_as``); both judge on a
    second held-out set, so the reported estimate is never made on the inputs that chose. ``nodes_at_8_bits`` keeps
    nodes at 8 bits by name inside a 4-bit model (:func:`~.mixed_precision.with_nodes_at_8_bits`), as
    ``nodes_to_exclude`` keeps them in float.
    ``search`` first tries MinMax and Percentile calibration with per-channel and per-tensor
    weights and keeps the one estimated best on that set (``report.searched``).

    ``memory_plan`` first measures one synthesis step at small batches and sizes the synthesis
    and calibration batches to ``memory_budget`` bytes (default: half of the memory there is;
    :func:`~fastdfkd_plugin.sources.memory_plan.plan_memory`): never larger than ``batch_size``,
    so where that fits nothing changes. Held-out sets keep their own batch unless memory allows less.
    """
    ort_quantization()  # before any work: without ONNX Runtime, one sentence naming the extra
    if reconstruction is not None and (accuracy_target is not None or sensitivity or search or nodes_at_8_bits):
        raise FastDFKDError("the fallback, the search, per-node sensitivity and nodes kept at 8 bits work on ONNX Runtime's "
                            "own quantization; drop --reconstruction, or drop --accuracy-target, --search and --keep-8-bit")
    if fallback not in FALLBACKS:
        raise FastDFKDError(f"the fallback keeps nodes in one of {', '.join(FALLBACKS)}, got {fallback!r}")
    if range_group < 0:
        raise FastDFKDError(f"range_group is a number of calibration inputs, 0 or more (0: the whole set's extremes), got {range_group}")
    if accuracy_target is not None and not 0 < accuracy_target <= 100:
        raise FastDFKDError(f"the accuracy target is a percent of the teacher's accuracy, above 0 and at most 100, got {accuracy_target:g}")

    if reconstruction is None:
        quantize_options = quantize_static_options(quantize_options)
        quantize_options.setdefault("calibration_providers", calibration_providers())
        kept_as = fallback_precision(fallback, quantize_options)
    else:
        quantize_options = reconstruction_settings(quantize_options) | dict(reconstruction_options or {})
    teacher = Teacher.of(teacher, input_shape, mean=mean, std=std, device=device)
    if accuracy_target is not None and not teacher.task.estimates_accuracy:
        raise FastDFKDError(f"the accuracy target needs an estimate of the accuracy kept, which is calibrated for classifiers "
                            f"only, and this teacher's outputs are '{teacher.task.name}'; drop --accuracy-target and keep "
                            "nodes in float by name with --exclude-node (fastdfkd sensitivity ranks them)")
    input_shape = teacher.input_shape
    if onnx_model is None and isinstance(teacher.model, OnnxModule):
        onnx_model = teacher.model.source
    with tempfile.TemporaryDirectory(prefix="fastdfkd-ort-") as workdir:
        fp32 = Path(workdir) / "model.onnx"
        agreement = checked_onnx_model(teacher, onnx_model, fp32, per_channel=bool(quantize_options.get("per_channel")),
                                       seed=seed, batch_size=batch_size, min_agreement=min_agreement, rtol=rtol)
        with_nodes_at_8_bits(fp32, quantize_options, nodes_at_8_bits)  # unknown names and 8-bit models refused now
        fixed_batch = onnx_input(fp32).shape[0]
        if calibration is None and isinstance(fixed_batch, int):  # refused now, not after the synthesis
            whole_batches(range(num_samples), fixed_batch, f"ONNX model {onnx_model or 'exported from the teacher'}")
        held_out = held_out_options(source, source_options)
        candidates = searched_options(quantize_options) if search else [quantize_options]
        calibration_keeps = "every batch" if any(_keeps_every_batch(options) for options in candidates) else "each batch"
        started = time.perf_counter()
        data_source = None
        if calibration is None:
            # Reconstruction fits each layer's outputs on the set, so it keeps the source's own (faithful) images: W4A4
            # AdaRound from auto-calibration sets scored 13 points lower (docs/calibration_results.md#which-prior-for-calibration-sets).
            options = (dict(source_options or {}) if reconstruction else
                       calibration_source_options(source, activation_bits(quantize_options.get("activation_type")), teacher,
                                                  source_options))
            data_source = get_source(source, teacher, seed=seed, progress=progress, **options)
        on_disk = num_samples * int(np.prod(input_shape)) * 4 > IN_MEMORY_LIMIT_BYTES
        calibration_batch, most_batches, held_out_batch = batch_size, None, HELD_OUT_BATCH
        if memory_plan:  # the calibration source, or the held-out sets' when the calibration set is given
            planner = data_source or get_source("fastdfkd", teacher, seed=seed, **held_out)
            resident = 0 if on_disk or data_source is None else planner.set_bytes(num_samples)  # the set, held throughout
            synthesises = data_source is not None or evaluate or sensitivity or search or accuracy_target is not None
            plan = plan_memory(planner, batch_size, budget=memory_budget, calibration=calibration_keeps, num_samples=num_samples,
                               resident=resident, synthesises=synthesises, progress=progress)
            batch_size, calibration_batch, most_batches = plan.synthesis_batch, plan.calibration_batch, plan.calibration_chunk
            held_out_batch = min(HELD_OUT_BATCH, plan.largest_batch)
        if data_source is not None:
            if on_disk:
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
        model_in = preprocessed(fp32, Path(workdir)) if preprocess else fp32
        started = time.perf_counter()
        report = QuantizationReport(output=str(output), calibration_samples=len(inputs), calibration_source=source_name,
                                    synthesis_seconds=synthesis_seconds, quantization_seconds=0.0, agreement=agreement,
                                    options={key: str(value) for key, value in quantize_options.items()})
        if equalize and reconstruction is None and quantize_options.get("per_channel"):
            model_in, report.equalized = equalize_depthwise_inputs(model_in, Path(workdir), inputs, calibration_batch)
        with atomic_path(output) as tmp:
            if reconstruction is None:
                selection = (held_out_set(teacher, held_out_samples, seed, progress, selection=True, batch_size=held_out_batch,
                                          **held_out)
                             if sensitivity or search or accuracy_target is not None else None)
                requantizers = [Requantizer(model_in, Path(workdir) / f"ranges-{options.get('calibrate_method')}.json",
                                            with_nodes_at_8_bits(model_in, with_symmetric_int4_weights(model_in, options),
                                                                 nodes_at_8_bits))  # per-channel or not: the same ranges
                                for options in candidates]
                for requantizer, options in zip(requantizers, candidates):
                    grouped = (range_group > 0 and _calibrator(options) == "minmax"
                               and "CalibMovingAverage" not in (options.get("extra_options") or {}))
                    batch = group_batch(calibration_batch, range_group) if grouped else calibration_batch
                    reader = calibration_reader(model_in, inputs, batch)
                    requantizer.calibrate(tmp, reader, strided(len(reader), most_batches), group=range_group // batch if grouped else None)
                    if search:
                        report.searched.append((describe_options(options), judged(teacher, tmp, selection).estimated_relative_accuracy))
                chosen = max(range(len(candidates)), key=lambda index: report.searched[index][1]) if search else 0
                requantizer = requantizers[chosen]
                if search:  # the last candidate was written last: write the chosen one again
                    report.options = {key: str(value) for key, value in candidates[chosen].items()}
                    requantizer.write(tmp)
                if sensitivity or accuracy_target is not None:
                    report.sensitivity = node_sensitivity(teacher, requantizer, selection, Path(workdir), progress)
                    if accuracy_target is not None:
                        report.kept_as = kept_as
                        report.kept = precision_fallback(teacher, requantizer, tmp, accuracy_target, report.sensitivity,
                                                         selection, kept_as)
            else:
                with quiet_root_logger():
                    quantize_reconstructed(model_in, tmp, calibration_reader(model_in, inputs, calibration_batch), reconstruction,
                                           **quantize_options)
            report.quantization_seconds = time.perf_counter() - started
            if evaluate:
                # The calibration set, its reader and the source that made it are done with: the held-out synthesis must
                # not grow beside them (PP-OCRv4's detector at defaults: 11.98 GiB against an 11.5 GiB budget).
                data_source = calibration = inputs = reader = None
                release_freed_memory()
                report.fidelity = fidelity(teacher, loadable(tmp, teacher, output), num_samples=held_out_samples, seed=seed,
                                           progress=progress, source_options=held_out, batch_size=held_out_batch,
                                           model_output_transform=teacher.output_transform)
        return report


def preprocessed(fp32: Path, workdir: Path) -> Path:
    """``fp32`` through ONNX Runtime's ``quant_pre_process`` (shape inference, graph optimisation) into ``workdir``, as
    quantization wants it; without symbolic shape inference where that fails (PaddleOCR's graphs)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_in = workdir / "model.pre.onnx"
    with quiet_root_logger(), working_folder(workdir):  # its shape inference drops a file in the working folder on failure
        try:
            quant_pre_process(str(fp32), str(model_in))
        except Exception as exc:  # ORT's symbolic shape inference asserts on graphs it cannot follow (PaddleOCR's)
            log.warning("ONNX Runtime's symbolic shape inference failed on the model (%s); pre-processing without it", reason(exc))
            quant_pre_process(str(fp32), str(model_in), skip_symbolic_shape=True)
    return model_in


def _calibrator(options: dict[str, Any]) -> str:
    """The lower-case name of ONNX Runtime's calibration method in ``options`` (``"minmax"``, ``"percentile"``, ...)."""
    method = options.get("calibrate_method") or "MinMax"  # quantize_static's default
    return str(getattr(method, "name", method)).lower()


def _keeps_every_batch(options: dict[str, Any]) -> bool:
    """Whether ONNX Runtime's calibrator for ``options`` keeps every batch's intermediate tensors (its histogram methods)."""
    return _calibrator(options) != "minmax"


def strided(batches: int, most: int | None) -> int | None:
    """The stride for ``batches`` calibration batches held at most ``most`` at a time: ONNX Runtime wants a divisor."""
    if most is None or most >= batches:
        return None
    return max(divisor for divisor in range(1, most + 1) if batches % divisor == 0)


def searched_options(options: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidates ``search`` tries: MinMax and Percentile calibration, per-channel and per-tensor weights."""
    methods = [ort_value("calibrate_method", name) for name in ("minmax", "percentile")]
    return [{**options, "calibrate_method": method, "per_channel": per_channel} for method in methods for per_channel in (True, False)]


def describe_options(options: dict[str, Any]) -> str:
    method = getattr(options["calibrate_method"], "name", options["calibrate_method"])
    return f"{method}, {'per-channel' if options['per_channel'] else 'per-tensor'} weights"


# -- fallback: the nodes quantization hurts most stay in float, or at 8 bits in a 4-bit model -----------------

FALLBACK_OPS = ("Conv", "MatMul", "Gemm")  # the nodes whose weights quantization rounds, and that fallback may keep in float
FALLBACKS = ("auto", "float", "8-bit")  # where the fallback keeps them; auto: at 8 bits inside a 4-bit model, else float
KEPT_WHERE = {"float": "in float", "8-bit": "at 8 bits"}  # how a report's kept_as reads in a sentence
REMOVABLE_ACTIVATIONS = ("Relu", "Clip")  # what ONNX Runtime's QDQ quantizer drops where the QuantizeLinear after it clips alike


def fallback_precision(fallback: str, options: dict[str, Any]) -> str:
    """Where the fallback keeps nodes for ``quantize_static`` ``options``: ``fallback``, or for ``"auto"`` 8 bits inside a
    model with 4-bit weights or activations (its nodes still run integer kernels), float otherwise."""
    if fallback == "auto":
        return "8-bit" if has_four_bits(options) else "float"
    if fallback == "8-bit" and not has_four_bits(options):
        raise FastDFKDError("the fallback keeps nodes at 8 bits only inside a model with 4-bit weights or activations, and "
                            "these settings quantize to 8 bits already; use --fallback float")
    return fallback


@dataclass(frozen=True)
class NodeSensitivity:
    """How much quantizing one node alone costs: the agreement with the teacher of the model with only it quantized."""

    node: str
    op_type: str
    agreement: float  # percent of the selection set


@dataclass(frozen=True)
class Requantizer:
    """Writes the quantized graph again with other nodes quantized, from ranges calibrated once (ONNX Runtime's cache)."""

    model_in: Path
    ranges: Path
    options: dict[str, Any]

    def calibrate(self, path: Path, reader: Any, stride: int | None = None, group: int | None = None) -> Path:
        """Calibrate on ``reader`` (keeping the ranges for :meth:`write`) and quantize into ``path``.

        ``stride``: calibrate on that many batches at a time, for calibrators that otherwise keep every batch's
        intermediate tensors until the end (ONNX Runtime's ``CalibStridedMinMax``, which works for all of them).
        ``group`` (MinMax only): the ranges are the mean over groups of that many batches of each group's extremes
        (:mod:`.range_groups`), not the whole set's.
        """
        if group is not None:
            write_grouped_minmax_ranges(self.model_in, reader, group, self.options, self.ranges)
            return self.write(path)
        options = self.options
        if stride is not None:
            options = {**options, "extra_options": {**options.get("extra_options", {}), "CalibStridedMinMax": stride}}
        self._quantize(path, reader, options)
        return path

    def write(self, path: Path, *, only: Sequence[str] | None = None, in_float: Sequence[str] = (),
              at_8_bits: Sequence[str] = ()) -> Path:
        """Quantize ``only`` these nodes (default: all), keeping ``in_float`` in float and ``at_8_bits`` at 8 bits, into ``path``."""
        options = with_nodes_at_8_bits(self.model_in, dict(self.options), at_8_bits)
        if only is not None:
            options["nodes_to_quantize"] = list(only)
        if in_float:
            options["nodes_to_exclude"] = [*options.get("nodes_to_exclude", []), *in_float]
        self._quantize(path, None, options)
        return path

    def _quantize(self, path: Path, reader: Any, options: dict[str, Any]) -> None:
        with quiet_root_logger():
            ort_quantization().quantize_static(str(self.model_in), str(path), reader, calibration_cache_path=str(self.ranges),
                                               **options)
        if options.get("nodes_to_exclude") and options.get("quant_format") != ort_quantization().QuantFormat.QOperator:
            keep_in_float(path, set(options["nodes_to_exclude"]), self.model_in)


def keep_in_float(path: Path, names: set[str], original: Path) -> None:
    """Feed the nodes ``names`` their activations in float, past the QuantizeLinear→DequantizeLinear pair before them.

    ``nodes_to_exclude`` alone leaves an excluded Conv between a DequantizeLinear and a
    QuantizeLinear, and ONNX Runtime's graph optimizer then quantizes its float weights and
    fuses it into a QLinearConv anyway (into an invalid graph at 4 bits). Without the
    DequantizeLinear before it, nothing fuses, and the node runs in float. Where ONNX Runtime
    removed a Relu or Clip before the QuantizeLinear (its unsigned range clips at zero, so the
    quantized path needs none), the float node would read the values before it: ResNet-20 at W4A4
    with one such convolution in float fell from 67 to 42 %. So that activation of the ``original``
    graph is put back, for the float node only.
    """
    onnx = onnx_package()
    model = onnx.load(str(path))
    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    present = {node.name for node in graph.node}
    original_graph = onnx.load(str(original)).graph
    removed = {node.output[0]: node for node in original_graph.node if node.op_type in REMOVABLE_ACTIVATIONS
               and node.name not in present}
    restored: dict[str, str] = {}

    def float_source(tensor: str, index: int) -> str:
        dequantize = producer.get(tensor)
        quantize = producer.get(dequantize.input[0]) if dequantize is not None and dequantize.op_type == "DequantizeLinear" else None
        if quantize is None or quantize.op_type != "QuantizeLinear":
            return tensor
        source = quantize.input[0]
        if source in removed and source not in restored:
            activation = copy.deepcopy(removed[source])
            activation.name += "_for_float"
            activation.input[0], activation.output[0] = source, f"{source}_for_float"
            graph.node.insert(index, activation)
            _copy_constants(original_graph, graph, activation.input[1:], index)
            restored[source] = activation.output[0]
        return restored.get(source, source)

    for node in list(graph.node):
        if node.name in names:
            index = list(graph.node).index(node)
            node.input[:] = [float_source(tensor, index) for tensor in node.input]
    onnx.save(model, str(path))


def _copy_constants(source: Any, target: Any, names: Sequence[str], index: int) -> None:
    """The tensors ``names`` (a Clip's bounds) from graph ``source`` into graph ``target`` where it lacks them: initializers,
    and Constant nodes inserted at ``index``."""
    have = {tensor.name for tensor in target.initializer} | {output for node in target.node for output in node.output}
    missing = set(names) - have
    target.initializer.extend(tensor for tensor in source.initializer if tensor.name in missing)
    for node in source.node:
        if node.op_type == "Constant" and node.output[0] in missing:
            target.node.insert(index, copy.deepcopy(node))


def fallback_candidates(model_in: Path, options: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, op type) of the nodes quantization would round the weights of, in graph order."""
    excluded = set(options.get("nodes_to_exclude", []))
    wanted = set(options.get("op_types_to_quantize") or FALLBACK_OPS) & set(FALLBACK_OPS)
    return [(node.name, node.op_type) for node in onnx_package().load(str(model_in)).graph.node
            if node.op_type in wanted and node.name not in excluded]


def node_sensitivity(teacher: Teacher, requantizer: Requantizer, held_out: SyntheticSet, workdir: Path,
                     progress: bool = False) -> list[NodeSensitivity]:
    """Every candidate node quantized alone, judged on ``held_out``: the most damaging first (as MCT and AIMET's
    QuantAnalyzer rank layers on user data, here on synthetic data)."""
    scores = []
    for name, op_type in tqdm(fallback_candidates(requantizer.model_in, requantizer.options), desc="per-node sensitivity",
                              unit="node", disable=not progress):
        path = requantizer.write(workdir / "one-node.onnx", only=[name])
        scores.append(NodeSensitivity(name, op_type, judged(teacher, path, held_out).agreement))
    return sorted(scores, key=lambda score: score.agreement)


def loadable(path: Path, teacher: Teacher, output: str | Path) -> OrtModel:
    """The quantized graph as ONNX Runtime will run it; one that it cannot load is refused before it replaces ``output``."""
    try:
        return OrtModel(path, teacher)
    except FastDFKDError as exc:
        raise FastDFKDError(f"ONNX Runtime cannot run the graph it quantized with these settings ({reason(exc)}), so {output} "
                            "was not written; with 4-bit activations use int4 weights (--weight-type int4), or 8-bit "
                            "activations") from exc


def judged(teacher: Teacher, path: Path, held_out: SyntheticSet) -> Fidelity:
    """The quantized graph at ``path``, run by ONNX Runtime, judged against the teacher on ``held_out``."""
    return fidelity(teacher, OrtModel(path, teacher), held_out=held_out, model_output_transform=teacher.output_transform)


def precision_fallback(teacher: Teacher, requantizer: Requantizer, output: Path, target: float, ranked: list[NodeSensitivity],
                       selection: SyntheticSet, kept_as: str = "float") -> list[NodeSensitivity]:
    """The fewest most-damaging nodes kept in float (``kept_as`` ``"float"``) or at 8 bits (``"8-bit"``) for the estimate on
    ``selection`` to reach ``target`` percent of the teacher's accuracy (a binary search: the estimate rises as nodes
    are kept), written to ``output``."""
    def write(count: int) -> Path:
        names = [score.node for score in ranked[:count]]
        return requantizer.write(output, in_float=names if kept_as == "float" else (),
                                 at_8_bits=names if kept_as == "8-bit" else ())

    def estimate(count: int) -> float:
        return judged(teacher, write(count), selection).estimated_relative_accuracy

    def reaches(count: int) -> bool:
        return estimate(count) >= target

    every = estimate(len(ranked))  # written to output: what stays there when the target is out of reach
    if every < target:  # the rest of the damage is in the other quantized operators (Add, Mul, ...)
        log.warning("keeping every Conv/MatMul/Gemm node %s is estimated to keep only %.0f %% of the teacher's accuracy, "
                    "below the %g %% target, so all %d are kept so, the most the fallback can do; quantize fewer operator "
                    "types (--op-types), use 8-bit types, or lower the target",
                    KEPT_WHERE[kept_as], every, target, len(ranked))
        return ranked
    low, high = 0, len(ranked)  # reaches(high), checked above
    while low < high:
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle + 1
    write(low)
    return ranked[:low]


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


def quantize_from_args(args: argparse.Namespace, output: str | Path, **settings: Any) -> QuantizationReport:
    """:func:`quantize_datafree` as the quantize-onnx options describe it, into ``output``; ``settings`` add to them."""
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
    if args.keep_8_bit:
        settings = {"nodes_at_8_bits": args.keep_8_bit, **settings}
    if args.op_types:
        options["op_types_to_quantize"] = [name.strip() for name in args.op_types.split(",") if name.strip()]
    if args.extra_option:
        options["extra_options"] = dict(args.extra_option)
    tuning = {key: value for key, value in (("iterations", args.iterations), ("learning_rate", args.learning_rate)) if value is not None}
    if tuning and args.reconstruction is None:
        raise FastDFKDError("--iterations and --learning-rate tune a reconstruction; add --reconstruction adaround or adaquant")
    return quantize_datafree(
        teacher, output, onnx_model=args.onnx, calibration=args.calibration, source=args.source,
        num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed, source_options=source_options(args),
        preprocess=not args.no_preprocess, progress=not args.quiet, memory_plan=not args.no_memory_plan,
        equalize=not args.no_equalize,
        range_group=args.range_group,
        held_out_samples=args.held_out_samples,
        memory_budget=args.memory_budget,
        reconstruction=args.reconstruction, reconstruction_options=tuning, **settings, **options,
    )


def cmd_quantize_onnx(args: argparse.Namespace) -> None:
    report = quantize_from_args(args, args.out, evaluate=not args.no_evaluate, accuracy_target=args.accuracy_target,
                                search=args.search, fallback=args.fallback)
    print(f"ONNX model agrees with the teacher on {report.agreement.samples} random inputs ({report.agreement.summary()}); "
          f"calibrated on {report.calibration_samples} samples from {report.calibration_source} ({report.synthesis_seconds:.1f} s)")
    print(f"quantized ({args.weight_type} weights, {args.activation_type} activations, {args.calibrate_method}, "
          f"{args.quant_format}{', per-channel' if args.per_channel else ''}"
          f"{', ' + args.reconstruction + ' (AMD Quark)' if args.reconstruction else ''}) in {report.quantization_seconds:.1f} s -> {report.output}")
    if report.equalized:
        widest = max(report.equalized, key=lambda pair: pair.spread_before)
        print(f"equalized the input channels of {len(report.equalized)} depthwise convolution(s) (widest over narrowest "
              f"channel range up to {widest.spread_before:.0f}x before, {max(pair.spread_after for pair in report.equalized):.1f}x after)")
    for settings, estimate in report.searched:
        print(f"  searched {settings}: estimated to keep {estimate:.1f} % (selection set)")
    if report.searched:
        print(f"kept {max(report.searched, key=lambda searched: searched[1])[0]} (the search overrides the calibration "
              "method and --per-channel above)")
    if args.accuracy_target is not None:
        kept = ", ".join(f"{score.node} ({score.op_type}, {score.agreement:.1f} % agreement quantized alone)" for score in report.kept)
        print(f"kept {len(report.kept)} of {len(report.sensitivity)} Conv/MatMul/Gemm nodes {KEPT_WHERE[report.kept_as]} to reach "
              f"{args.accuracy_target:g} % of the teacher's accuracy (estimated on a selection set){': ' + kept if kept else ''}")
    if report.fidelity is not None:
        print_fidelity(report.fidelity, "try 8-bit activations (--activation-type uint8), Percentile calibration, or "
                                        "keep the nodes it hurts most at 8 bits or in float with --accuracy-target 97")




def cmd_sensitivity(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="fastdfkd-sensitivity-") as workdir:
        report = quantize_from_args(args, Path(workdir) / "quantized.onnx", evaluate=False, sensitivity=True)
    width = max([len(score.node) for score in report.sensitivity] + [4])
    print(f"what quantizing each node alone costs: agreement with the teacher on {args.held_out_samples} held-out synthetic "
          "inputs, most damaging first")
    print(f"{'node':{width}}  {'op':6}  agreement")
    for score in report.sensitivity:
        print(f"{score.node:{width}}  {score.op_type:6}  {score.agreement:6.1f} %")
    if args.plot:
        plot_sensitivity(report.sensitivity, args.plot)
        print(f"wrote {args.plot}")


def plot_sensitivity(scores: list[NodeSensitivity], path: str | Path) -> None:
    """The per-node table as horizontal bars, most damaging on top, written atomically."""
    plt = require_matplotlib()
    figure, axis = plt.subplots(figsize=(7, 1.2 + 0.22 * len(scores)))
    axis.barh([score.node for score in reversed(scores)], [score.agreement for score in reversed(scores)], color="#4c72b0")
    axis.set(xlabel="agreement with the teacher, this node alone quantized (%)", xlim=(0, 100),
             title="per-node sensitivity on held-out synthetic inputs")
    axis.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)


@hookimpl
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    quant = subparsers.add_parser("quantize-onnx", help="ONNX Runtime static quantization calibrated on synthetic data")
    add_quantization_arguments(quant)
    quant.add_argument("--out", required=True, help="the quantized ONNX model")
    quant.add_argument("--accuracy-target", type=positive_float,
                       help="keep the fewest Conv/MatMul/Gemm nodes quantization hurts most out of the lowest precision "
                            "until the estimate reaches this percent of the teacher's accuracy, e.g. 97 (judged on held-out "
                            "synthetic inputs)")
    quant.add_argument("--fallback", choices=FALLBACKS, default="auto",
                       help="where --accuracy-target keeps those nodes (default auto: at 8 bits inside a model with 4-bit "
                            "weights or activations, so they still run integer kernels; in float otherwise)")
    quant.add_argument("--search", action="store_true",
                       help="try MinMax and Percentile calibration with per-channel and per-tensor weights and keep the one "
                            "estimated best on held-out synthetic inputs (overrides --calibrate-method and --per-channel)")
    add_evaluate_arguments(quant)
    quant.set_defaults(run=cmd_quantize_onnx)
    sensitivity = subparsers.add_parser("sensitivity", help="rank the Conv/MatMul/Gemm nodes by what quantizing each alone "
                                                            "costs, on held-out synthetic inputs (quantize-onnx's options)")
    add_quantization_arguments(sensitivity)
    sensitivity.add_argument("--plot", help="also draw the table as bars (PNG)")
    sensitivity.set_defaults(run=cmd_sensitivity)


def add_quantization_arguments(quant: argparse.ArgumentParser) -> None:
    """The teacher, calibration and ONNX Runtime options of quantize-onnx and sensitivity."""
    quant.add_argument("--onnx", help="the FP32 ONNX model; alone, it is the teacher too (default: export it from --model)")
    add_model_arguments(quant, required=False)
    add_calibration_arguments(quant, default_samples=512)
    quant.add_argument("--weight-type", default="int8", choices=sorted(QUANT_TYPES),
                       help="int4 weights go on the symmetric grid [-7, 7], not ONNX Runtime's [-8, 7] that clips each "
                            "channel's largest weight (--extra-option WeightSymmetric=false for asymmetric ones)")
    quant.add_argument("--activation-type", default="uint8", choices=sorted(QUANT_TYPES))
    quant.add_argument("--calibrate-method", default="minmax", choices=sorted(CALIBRATION_METHODS))
    quant.add_argument("--quant-format", default="qdq", choices=sorted(QUANT_FORMATS))
    quant.add_argument("--per-channel", action="store_true")
    quant.add_argument("--exclude-node", action="append", help="node name to leave in float (repeatable)")
    quant.add_argument("--keep-8-bit", action="append", metavar="NODE",
                       help="in a model with 4-bit weights or activations, a node name whose weights and inputs stay at "
                            "8 bits (repeatable; fastdfkd sensitivity ranks them)")
    quant.add_argument("--op-types", help="quantize only these ONNX op types, e.g. MatMul,Gemm for a transformer "
                                          "(LayerNorm, Softmax and GELU stay in float; default: all the quantizer supports)")
    quant.add_argument("--extra-option", action="append", type=_extra_option, help="KEY=VALUE passed in extra_options (repeatable)")
    quant.add_argument("--held-out-samples", type=positive, default=HELD_OUT_SAMPLES,
                       help=f"held-out synthetic inputs the estimate, the search, the fallback and the sensitivity table "
                            f"judge on (default {HELD_OUT_SAMPLES}); fewer are faster on a large model and noisier")
    quant.add_argument("--no-preprocess", action="store_true", help="skip quant_pre_process (shape inference + optimisation)")
    quant.add_argument("--no-equalize", action="store_true",
                       help="with --per-channel, leave the channels each depthwise convolution reads at their own ranges "
                            "(default: rescale them to one range, which the float model does not notice)")
    quant.add_argument("--range-group", type=non_negative, default=RANGE_GROUP,
                       help=f"MinMax ranges: the mean over groups of this many calibration inputs of each group's extremes, "
                            f"which do not grow with the set (default {RANGE_GROUP}; 0: the whole set's extremes)")
    quant.add_argument("--reconstruction", choices=sorted(RECONSTRUCTIONS),
                       help="fit each layer's rounding (adaround) or weights (adaquant) to the calibration images with "
                            "AMD Quark (extra [quark]) instead of ONNX Runtime's calibrators")
    quant.add_argument("--iterations", type=positive, help="reconstruction steps per layer (Quark's default: 1000 adaround, 3000 adaquant)")
    quant.add_argument("--learning-rate", type=positive_float, help="reconstruction learning rate (Quark's default: 0.1 adaround, 1e-5 adaquant)")

