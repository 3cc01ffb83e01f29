"""ONNX Runtime and ONNX export: data-free static quantization and export verification.

In an existing ONNX Runtime script, only the reader changes:

    from fastdfkd_plugin import get_source
    from fastdfkd_plugin.adapters.onnxruntime import calibration_reader

    calibration = get_source("fastdfkd", teacher, (3, 32, 32), mean=MEAN, std=STD).synthetic_set(512)
    quantize_static("model.onnx", "model.qdq.onnx", calibration_reader("model.onnx", calibration), ...)

or everything in one call: :func:`quantize_datafree`. :func:`export_and_verify`
exports a torch model and checks the ONNX file against torch on synthetic batches.
onnx and onnxruntime (or onnxruntime-gpu) are imported only when used.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import FastDFKDError, reason
from ..hookspecs import hookimpl
from ..io import atomic_path, check_disk_space, check_output_folder, staged_folder
from ..optional import require
from ..options import (
    add_model_arguments,
    add_source_arguments,
    load_teacher,
    require_normalisation,
    source_from_args,
    source_options,
)
from ..plugins import get_source
from ..sources.base import SyntheticSet
from ..teacher import Teacher, unflatten_like
from .generic import DEFAULT_BATCH_SIZE, CalibrationInput, calibration_data, load_inputs, rebatch, whole_batches

log = logging.getLogger(__name__)

# The first onnxruntime release whose quantization tool has each type.
MIN_ORT_VERSION = {"int16": "1.17", "uint16": "1.17", "int4": "1.18", "uint4": "1.18"}
QUANT_TYPES = {"int8": "QInt8", "uint8": "QUInt8", "int16": "QInt16", "uint16": "QUInt16", "int4": "QInt4", "uint4": "QUInt4"}
# Calibration sets larger than this are synthesised into a memory-mapped file, not RAM.
IN_MEMORY_LIMIT_BYTES = 1 << 30
VERIFY_WARMUP_TASKS = 3  # export-onnx's default warm-up: verification needs realistic inputs, not the best ones
TEST_DATA_ENTRIES = "test_data_set_*"  # what export-onnx --test-data writes into its folder
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy", "distribution": "Distribution"}


def _ort() -> Any:
    require("onnxruntime.quantization", "onnxruntime", "ONNX Runtime", note=" (or [onnxruntime-gpu], never both)")
    return require("onnxruntime", "onnxruntime")


def _onnx() -> Any:
    return require("onnx", "onnxruntime", "the onnx package")


# -- reading an ONNX model's input -------------------------------------------------------------

@dataclass(frozen=True)
class OnnxInput:
    name: str
    shape: tuple[int | None, ...]  # None for symbolic dimensions


def onnx_input(model_path: str | Path) -> OnnxInput:
    """The model's single graph input (initializers excluded); a clear error for anything else."""
    onnx = _onnx()
    path = Path(model_path)
    if not path.is_file():
        raise FastDFKDError(f"ONNX model {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise FastDFKDError(f"{path} is not a readable ONNX model ({exc.__class__.__name__}); re-export it") from exc
    return graph_input(model, str(path))


def graph_input(model: Any, label: str = "the ONNX model") -> OnnxInput:
    """The single graph input of a loaded ``ModelProto`` (initializers excluded)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise FastDFKDError(f"{label} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); only single-input models are supported")
    dims = inputs[0].type.tensor_type.shape.dim
    return OnnxInput(inputs[0].name, tuple(d.dim_value if d.HasField("dim_value") else None for d in dims))


def check_input_shape(model_input: OnnxInput, input_shape: Sequence[int], path: str | Path) -> None:
    """Refuse an ONNX model whose fixed input dimensions contradict the teacher's C,H,W."""
    onnx_chw = model_input.shape[1:]
    if len(onnx_chw) != len(input_shape) or any(o is not None and o != s for o, s in zip(onnx_chw, input_shape)):
        shown = ",".join("?" if d is None else str(d) for d in model_input.shape)
        raise FastDFKDError(
            f"ONNX model {path} takes input '{model_input.name}' of shape [{shown}], which does not fit the teacher's "
            f"input shape {','.join(map(str, input_shape))}; export the model for that shape or fix --input-shape"
        )


def static_input_shape(model_input: OnnxInput, path: str | Path) -> tuple[int, int, int]:
    """C,H,W from the ONNX model when they are fixed there (so --input-shape can be left out)."""
    chw = model_input.shape[1:]
    if len(chw) != 3 or any(d is None for d in chw):
        raise FastDFKDError(f"ONNX model {path} does not fix its C,H,W input sizes; pass --input-shape")
    return tuple(chw)  # type: ignore[return-value]


# -- the calibration reader ------------------------------------------------------------------------

@functools.cache
def make_reader_class() -> type:
    """The reader subclasses ONNX Runtime's ``CalibrationDataReader``, so it is built once, on first use."""
    from onnxruntime.quantization import CalibrationDataReader

    class ArrayCalibrationReader(CalibrationDataReader):
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
    _ort()
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


# -- calibration sets in other tools' formats ---------------------------------------------------------

def save_inputs_npz(path: str | Path, inputs: dict[str, np.ndarray]) -> None:
    """``.npz`` keyed by ONNX input name, as TensorRT Model Optimizer and similar tools read."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{name: np.ascontiguousarray(array, dtype=np.float32) for name, array in inputs.items()})


def load_inputs_npz(path: str | Path) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise FastDFKDError(f"calibration file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def save_onnx_test_data(folder: str | Path, batches: Sequence[dict[str, np.ndarray]],
                        outputs: Sequence[dict[str, np.ndarray]] | None = None, overwrite: bool = False) -> None:
    """The ONNX backend-test layout: ``folder/test_data_set_N/input_M.pb`` (and ``output_M.pb``).

    Written into a staging folder and moved into place. A non-empty ``folder`` is refused
    unless ``overwrite``; then only its ``test_data_set_*`` folders are replaced.
    """
    onnx = _onnx()
    with staged_folder(folder, overwrite, replaces=TEST_DATA_ENTRIES) as staging:
        for index, batch in enumerate(batches):
            case = staging / f"test_data_set_{index}"
            case.mkdir()
            for kind, tensors in (("input", batch), ("output", outputs[index] if outputs else {})):
                for position, (name, array) in enumerate(tensors.items()):
                    proto = onnx.numpy_helper.from_array(np.ascontiguousarray(array), name=name)
                    (case / f"{kind}_{position}.pb").write_bytes(proto.SerializeToString())


def load_onnx_test_data(folder: str | Path, kind: str = "input") -> list[dict[str, np.ndarray]]:
    onnx = _onnx()
    cases = sorted(Path(folder).glob("test_data_set_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not cases:
        raise FastDFKDError(f"{folder} holds no test_data_set_N folders")
    loaded = []
    for case in cases:
        tensors = {}
        for file in sorted(case.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
            proto = onnx.TensorProto()
            proto.ParseFromString(file.read_bytes())
            tensors[proto.name] = onnx.numpy_helper.to_array(proto)
        loaded.append(tensors)
    return loaded


# -- export and verification ------------------------------------------------------------------------

@dataclass
class Verification:
    """How closely an ONNX model reproduces the torch model on a set of inputs."""

    batches: int
    samples: int
    max_abs_error: float
    max_rel_error: float  # max |onnx − torch| / max |torch|
    top1_agreement: float  # percent

    def failures(self, atol: float, rtol: float, min_agreement: float) -> list[str]:
        problems = []
        if self.max_abs_error > atol and self.max_rel_error > rtol:
            problems.append(f"max error {self.max_abs_error:.3g} (relative {self.max_rel_error:.3g}) exceeds atol {atol:g} / rtol {rtol:g}")
        if self.top1_agreement < min_agreement:
            problems.append(f"top-1 agreement {self.top1_agreement:.1f} % is below {min_agreement:g} %")
        return problems


def session(model_path: str | Path, providers: Sequence[str] | None = None) -> Any:
    ort = _ort()
    try:
        return ort.InferenceSession(str(model_path), providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # ORT raises its own exception types for bad files
        raise FastDFKDError(f"ONNX Runtime cannot load {model_path} ({str(exc).strip().splitlines()[0][:200]})") from exc


def onnx_accuracy(model_path: str | Path, inputs: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy (%) of an ONNX model on labelled inputs, e.g. your own validation data after quantizing."""
    runner = session(model_path)
    name = runner.get_inputs()[0].name
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = runner.run(None, {name: np.asarray(inputs[start : start + batch_size], dtype=np.float32)})[0]
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return 100.0 * correct / len(labels)


@torch.no_grad()
def verify_onnx(teacher: Teacher | nn.Module, model_path: str | Path, batches: Sequence[torch.Tensor]) -> Verification:
    """Run the teacher (torch) and ``model_path`` (ONNX Runtime, CPU) on the same batches and compare their logits.

    The ONNX model's outputs are put back in the structure of the torch output, so the
    teacher's ``output_transform`` picks the logits from both. A graph with a fixed
    batch size gets the inputs in batches of that size.
    """
    teacher = Teacher.of(teacher, batches[0].shape[1:])
    runner = session(model_path)
    name, fixed = runner.get_inputs()[0].name, runner.get_inputs()[0].shape[0]
    batches = rebatch(list(batches), fixed if isinstance(fixed, int) else None, f"ONNX model {model_path}")  # symbolic: a name
    max_abs = max_ref = 0.0
    agree = total = 0
    with teacher.frozen():
        for batch in batches:
            output = teacher.model(batch.to(teacher.device))
            reference = teacher.logits_from(output).float().cpu().numpy()
            leaves = [torch.from_numpy(leaf) for leaf in run_batch(runner, name, batch, model_path)]
            onnx_out = teacher.logits_from(unflatten_like(output, leaves)).float().numpy()
            if onnx_out.shape != reference.shape:
                raise FastDFKDError(f"the ONNX model's output has shape {onnx_out.shape}, torch's {reference.shape}; they are different models")
            max_abs = max(max_abs, float(np.abs(onnx_out - reference).max()))
            max_ref = max(max_ref, float(np.abs(reference).max()))
            agree += int((onnx_out.argmax(1) == reference.argmax(1)).sum())
            total += len(reference)
    return Verification(len(batches), total, max_abs, max_abs / max(max_ref, 1e-12), 100.0 * agree / total)


def run_batch(runner: Any, input_name: str, batch: torch.Tensor, model_path: str | Path) -> list[np.ndarray]:
    """One ONNX Runtime run; its failure becomes one sentence (the usual cause: a batch size baked in at export)."""
    try:
        return runner.run(None, {input_name: batch.detach().cpu().numpy().astype(np.float32)})
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        raise FastDFKDError(
            f"ONNX Runtime cannot run {model_path} on a batch of {len(batch)} ({reason(exc)}); if the model's forward "
            "turns the batch size into a Python number (len(x), int(x.shape[0])), the export fixed it: use x.shape[0]"
        ) from exc


def export_onnx(teacher: Teacher | nn.Module, example: torch.Tensor, path: str | Path, input_name: str = "input",
                opset: int = 17) -> None:
    """Export the model as it is (all its outputs) with a dynamic batch dimension (TorchScript exporter), atomically."""
    teacher = Teacher.of(teacher, example.shape[1:])
    with atomic_path(path) as tmp:
        _export_to(teacher, example, tmp, input_name, opset)


def _export_to(teacher: Teacher, example: torch.Tensor, file: Path, input_name: str, opset: int) -> None:
    with teacher.frozen():
        torch.onnx.export(
            teacher.model, (example.to(teacher.device),), str(file), input_names=[input_name], output_names=["logits"],
            opset_version=opset, dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
        )


def export_and_verify(
    teacher: Teacher | nn.Module, path: str | Path, batches: Sequence[torch.Tensor], *, atol: float = 1e-4, rtol: float = 1e-3,
    min_agreement: float = 100.0, opset: int = 17,
) -> Verification:
    """Export the teacher using the first batch as example input, verify on all batches, then write ``path``.

    The export is verified as a temporary file beside ``path`` and moved there only if
    it passes. When it strays beyond the tolerances, :class:`FastDFKDError` is raised,
    the temporary file is removed and whatever was at ``path`` before is kept:
    synthetic batches that look like real data catch divergences (traced control flow,
    range-dependent ops) that noise inputs hide.
    """
    teacher = Teacher.of(teacher, batches[0].shape[1:])
    kept = "the file already there was kept" if Path(path).exists() else "nothing was written"
    with atomic_path(path) as tmp:
        _export_to(teacher, batches[0][:1], tmp, "input", opset)
        result = verify_onnx(teacher, tmp, batches)
        problems = result.failures(atol, rtol, min_agreement)
        if problems:
            raise FastDFKDError(f"the exported ONNX model does not match torch on {result.samples} inputs: {'; '.join(problems)}; "
                                f"look for data-dependent control flow or unsupported ops ({kept} at {path})")
    return result


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


def quant_type(name: str) -> Any:
    """``"int4"`` → ``QuantType.QInt4``, naming the ONNX Runtime release that has it when this one does not."""
    ort = _ort()
    from onnxruntime.quantization import QuantType

    key = name.lower()
    if key not in QUANT_TYPES:
        raise FastDFKDError(f"unknown quantization type {name!r}; choose one of {', '.join(QUANT_TYPES)}")
    if not hasattr(QuantType, QUANT_TYPES[key]):
        raise FastDFKDError(f"{name} quantization needs onnxruntime ≥ {MIN_ORT_VERSION[key]}, but {ort.__version__} is installed; upgrade it")
    return getattr(QuantType, QUANT_TYPES[key])


def calibration_providers() -> list[str]:
    """CUDA for calibration when onnxruntime-gpu is installed and sees a GPU, else CPU."""
    available = _ort().get_available_providers()
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
    teacher: Teacher | nn.Module,
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
    **quantize_options: Any,
) -> QuantizationReport:
    """Export (if needed), check, pre-process and statically quantize ``teacher`` with data-free calibration.

    ``teacher`` is a :class:`Teacher`, or a model with ``input_shape``, ``mean``, ``std``
    and ``device`` to build one.

    ``quantize_options`` go to ``onnxruntime.quantization.quantize_static`` unchanged
    (``quant_format``, ``per_channel``, ``weight_type``, ``activation_type``,
    ``calibrate_method``, ``nodes_to_exclude``, ``extra_options``, ...). Before
    quantizing, the ONNX model is run against the teacher on synthetic batches;
    disagreement (for example, other weights) stops here with a clear message.
    """
    _ort()
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    teacher = Teacher.of(teacher, input_shape, mean=mean, std=std, device=device)
    input_shape = teacher.input_shape
    with tempfile.TemporaryDirectory(prefix="fastdfkd-ort-") as workdir:
        started = time.perf_counter()
        if calibration is None:
            data_source = get_source(source, teacher, seed=seed, progress=progress, **(source_options or {}))
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
                quant_pre_process(str(fp32), str(model_in))
        started = time.perf_counter()
        quantize_options.setdefault("calibration_providers", calibration_providers())
        with atomic_path(output) as tmp, quiet_root_logger():
            quantize_static(str(model_in), str(tmp), calibration_reader(model_in, inputs, batch_size), **quantize_options)
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
    from onnxruntime.quantization import CalibrationMethod, QuantFormat

    _ort()
    if args.calibration is None:
        require_normalisation(args)
    if args.input_shape is None and args.onnx is None:
        raise FastDFKDError("--input-shape is needed when there is no --onnx model to read it from; pass e.g. --input-shape 3,32,32")
    teacher = load_teacher(args, input_shape=args.input_shape or static_input_shape(onnx_input(args.onnx), args.onnx))
    options = dict(
        quant_format=QuantFormat.QDQ if args.quant_format == "qdq" else QuantFormat.QOperator,
        per_channel=args.per_channel,
        weight_type=quant_type(args.weight_type),
        activation_type=quant_type(args.activation_type),
        calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[args.calibrate_method]),
    )
    if args.exclude_node:
        options["nodes_to_exclude"] = args.exclude_node
    if args.op_types:
        options["op_types_to_quantize"] = [name.strip() for name in args.op_types.split(",") if name.strip()]
    if args.extra_option:
        options["extra_options"] = dict(args.extra_option)
    report = quantize_datafree(
        teacher, args.out, onnx_model=args.onnx, calibration=args.calibration, source=args.source,
        num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed, source_options=source_options(args),
        preprocess=not args.no_preprocess,
        progress=not args.quiet, **options,
    )
    print(f"calibrated on {report.calibration_samples} samples from {report.calibration_source} "
          f"({report.synthesis_seconds:.1f} s), ONNX model agrees with the teacher on {report.agreement.top1_agreement:.1f} % of them")
    print(f"quantized ({args.weight_type} weights, {args.activation_type} activations, {args.calibrate_method}, "
          f"{args.quant_format}{', per-channel' if args.per_channel else ''}) in {report.quantization_seconds:.1f} s -> {report.output}")


def cmd_export_onnx(args: argparse.Namespace) -> None:
    if args.test_data:
        check_output_folder(args.test_data, args.overwrite, TEST_DATA_ENTRIES)
    teacher = load_teacher(args)
    source = source_from_args(args, teacher)
    synthetic = source.synthetic_set(args.num_samples, args.batch_size)
    batches = list(synthetic.inputs.split(args.batch_size))
    result = export_and_verify(teacher, args.out, batches, atol=args.atol, rtol=args.rtol,
                               min_agreement=args.min_agreement, opset=args.opset)
    if args.test_data:
        save_onnx_test_data(args.test_data, [{"input": b.cpu().numpy()} for b in batches], overwrite=args.overwrite)
    print(f"exported {args.out} (opset {args.opset}); verified on {result.samples} {args.source} inputs: "
          f"max abs error {result.max_abs_error:.2e}, max rel error {result.max_rel_error:.2e}, "
          f"top-1 agreement {result.top1_agreement:.1f} %")
    if args.test_data:
        print(f"ONNX test data: {args.test_data}/test_data_set_*/input_0.pb")


@hookimpl
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    quant = subparsers.add_parser("quantize-onnx", help="ONNX Runtime static quantization calibrated on synthetic data")
    quant.add_argument("--onnx", help="the FP32 ONNX model (default: export it from --model)")
    add_model_arguments(quant, input_shape_required=False)
    add_source_arguments(quant, default_samples=512)
    quant.add_argument("--calibration", help="use this synthetic set (.npz from `fastdfkd synthesize`) instead of synthesising")
    quant.add_argument("--out", required=True, help="the quantized ONNX model")
    quant.add_argument("--weight-type", default="int8", choices=sorted(QUANT_TYPES))
    quant.add_argument("--activation-type", default="uint8", choices=sorted(QUANT_TYPES))
    quant.add_argument("--calibrate-method", default="minmax", choices=sorted(CALIBRATION_METHODS))
    quant.add_argument("--quant-format", default="qdq", choices=["qdq", "qoperator"])
    quant.add_argument("--per-channel", action="store_true")
    quant.add_argument("--exclude-node", action="append", help="node name to leave in float (repeatable)")
    quant.add_argument("--op-types", help="quantize only these ONNX op types, e.g. MatMul,Gemm for a transformer "
                                          "(LayerNorm, Softmax and GELU stay in float; default: all the quantizer supports)")
    quant.add_argument("--extra-option", action="append", type=_extra_option, help="KEY=VALUE passed in extra_options (repeatable)")
    quant.add_argument("--no-preprocess", action="store_true", help="skip quant_pre_process (shape inference + optimisation)")
    quant.set_defaults(run=cmd_quantize_onnx)

    export = subparsers.add_parser(
        "export-onnx", help="export to ONNX and verify against torch on synthetic batches",
        description=f"Verification needs realistic-looking inputs, not a fully warm generator: unless given, "
                    f"--warmup-tasks is {VERIFY_WARMUP_TASKS} here (seconds, not minutes).")
    add_model_arguments(export)
    add_source_arguments(export, default_samples=64)
    export.add_argument("--out", required=True, help="the ONNX file to write")
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--atol", type=float, default=1e-4)
    export.add_argument("--rtol", type=float, default=1e-3)
    export.add_argument("--min-agreement", type=float, default=100.0, help="minimum top-1 agreement in percent")
    export.add_argument("--test-data", help="also write the batches as ONNX test-data folders here (a new or empty folder)")
    export.add_argument("--overwrite", action="store_true", help="replace the test_data_set_* folders already in --test-data")
    export.set_defaults(run=cmd_export_onnx, warmup_tasks=VERIFY_WARMUP_TASKS)
