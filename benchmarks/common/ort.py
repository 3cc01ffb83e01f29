"""ONNX Runtime (ORT) static quantization as the calibration benchmarks score it: which configurations, how, and on what.

A calibration set is judged by the accuracy of the model ORT quantizes with it. Every
benchmark exports and pre-processes the model the same way (:func:`prepared_onnx`) and
quantizes it with the same QDQ, per-channel settings (:func:`quantized_accuracy`), so
their columns (``"W4A4 MinMax"`` and so on) can be compared across reports.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from fastdfkd_plugin import Teacher
from fastdfkd_plugin.adapters.onnx_export import export_onnx, onnx_accuracy
from fastdfkd_plugin.adapters.onnxruntime import calibration_reader, quiet_root_logger, with_symmetric_int4_weights

from .data import INPUT_SHAPE, teacher_splits
from .sources import calibration_sets
from .teachers import build_teacher

# name: (weight type, activation type, further quantize_static options)
QuantConfig = tuple[QuantType, QuantType, dict[str, Any]]
CONFIGS: dict[str, QuantConfig] = {"W8A8": (QuantType.QInt8, QuantType.QUInt8, {}), "W4A8": (QuantType.QInt4, QuantType.QUInt8, {}),
                                   "W4A4": (QuantType.QInt4, QuantType.QUInt4, {})}
METHODS = {"MinMax": CalibrationMethod.MinMax, "Percentile": CalibrationMethod.Percentile}
# A report column of split_scores: (weight type, activation type, calibrator name, per-channel weights)
Column = tuple[QuantType, QuantType, str, bool]


def prepared_onnx(model: torch.nn.Module, workdir: Path, name: str = "model",
                  input_shape: tuple[int, int, int] = INPUT_SHAPE) -> tuple[Path, Path]:
    """The model exported to ONNX, and that graph pre-processed for ONNX Runtime's quantizer."""
    fp32, pre = workdir / f"{name}.onnx", workdir / f"{name}.pre.onnx"
    export_onnx(model, torch.zeros(1, *input_shape), fp32)
    with quiet_root_logger():
        quant_pre_process(str(fp32), str(pre))
    return fp32, pre


@dataclass(frozen=True)
class TeacherUnderTest:
    """A named teacher as the calibration benchmarks quantize it: its graph, its real sets and the splits that score it."""

    teacher: Teacher
    pre: Path  # the exported graph, pre-processed for ORT's quantizer
    workdir: Path  # a temporary folder for quantized models, gone after the ``with``
    real: dict[int, np.ndarray]  # calibration seed → its real train_10k images
    splits: dict[str, tuple[np.ndarray, np.ndarray]]  # "heldout" / "test_a" → (inputs, labels)
    fp32: dict[str, float]  # split → FP32 accuracy (%) of the exported graph


@contextlib.contextmanager
def teacher_under_test(name: str, samples: int, seeds: list[int], data_dir: Path, seed: int) -> Iterator[TeacherUnderTest]:
    """The named teacher (on the CPU) exported and pre-processed in a temporary folder, with its data at its input size."""
    teacher = build_teacher(name, "cpu", data_dir)
    real, splits = teacher_splits(teacher.input_shape[-1], samples, seeds, data_dir, seed)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        fp32, pre = prepared_onnx(teacher.model, workdir, name, teacher.input_shape)
        fp32_accuracy = {split: onnx_accuracy(fp32, x, y) for split, (x, y) in splits.items()}
        print(f"{name}: FP32 {fp32_accuracy}", flush=True)
        yield TeacherUnderTest(teacher, pre, workdir, real, splits, fp32_accuracy)


def seed_rows(under_test: TeacherUnderTest, name: str, sources: Sequence[str], seeds: list[int], samples: int,
              models: Callable[[dict[int, np.ndarray]], Iterator[tuple[str, Path]]]) -> list[dict[str, Any]]:
    """One row per seed and source: the accuracy on every split of each ``(key, model)`` that ``models`` quantizes from
    that source's calibration sets (:func:`~.sources.calibration_sets`, by activation width), and the sets' seconds.
    Each model is scored before ``models`` makes the next, so they may share one path."""
    rows = []
    for seed in seeds:
        for source in sources:
            sets, seconds = calibration_sets(source, under_test.teacher, seed, samples, under_test.real[seed])
            accuracy: dict[str, dict[str, float]] = {split: {} for split in under_test.splits}
            for key, model in models(sets):
                for split, (x, y) in under_test.splits.items():
                    accuracy[split][key] = round(onnx_accuracy(model, x, y), 2)
            rows.append({"source": source, "seed": seed, "set_seconds": seconds, "accuracy": accuracy})
            print(f"  {name} {source} seed {seed}: held-out {accuracy['heldout']}, test_a {accuracy['test_a']}", flush=True)
    return rows


def quantized_model(pre: Path, inputs: np.ndarray, weight_type: QuantType, activation_type: QuantType,
                    method: CalibrationMethod, workdir: Path, batch_size: int = 64, per_channel: bool = True,
                    **options: Any) -> Path:
    """The QDQ model calibrated on ``inputs`` (per-channel weights unless told otherwise); ``options`` go to ``quantize_static``."""
    out = workdir / "quantized.onnx"
    with quiet_root_logger():
        quantize_static(str(pre), str(out), calibration_reader(pre, inputs, batch_size), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, weight_type=weight_type, activation_type=activation_type,
                        calibrate_method=method, **options)
    return out


def quantized_accuracy(pre: Path, inputs: np.ndarray, weight_type: QuantType, activation_type: QuantType,
                       method: CalibrationMethod, eval_x: np.ndarray, eval_y: np.ndarray, workdir: Path,
                       batch_size: int = 64, **options: Any) -> float:
    """Accuracy (%) of the QDQ model (per-channel weights) calibrated on ``inputs``; ``options`` go to ``quantize_static``."""
    return onnx_accuracy(quantized_model(pre, inputs, weight_type, activation_type, method, workdir, batch_size, **options),
                         eval_x, eval_y)


def columns(configs: dict[str, QuantConfig] = CONFIGS) -> list[str]:
    """The report columns of :func:`accuracy_per_column`: ``"CONFIG METHOD"``, configuration by configuration."""
    return [f"{config} {method}" for config in configs for method in METHODS]


def accuracy_per_column(pre: Path, inputs: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray, workdir: Path,
                        configs: dict[str, QuantConfig] = CONFIGS, batch_size: int = 64) -> dict[str, float]:
    """``"CONFIG METHOD"`` → accuracy (%) after quantizing with that configuration and calibration method on ``inputs``."""
    return {f"{config} {method_name}": quantized_accuracy(pre, inputs, weight_type, activation_type, method, eval_x, eval_y,
                                                          workdir, batch_size, **options)
            for config, (weight_type, activation_type, options) in configs.items() for method_name, method in METHODS.items()}


def w4a4_accuracy(pre: Path, inputs: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray, workdir: Path) -> dict[str, float]:
    """Calibration method → W4A4 accuracy (%): where calibration data shows most, the screening benchmarks' score."""
    scores = accuracy_per_column(pre, inputs, eval_x, eval_y, workdir, configs={"W4A4": CONFIGS["W4A4"]})
    return {column.removeprefix("W4A4 "): accuracy for column, accuracy in scores.items()}


def split_scores(pre: Path, inputs: np.ndarray, splits: dict[str, tuple[np.ndarray, np.ndarray]], workdir: Path,
                 columns: dict[str, Column]) -> dict[str, dict[str, float]]:
    """Split → column → accuracy (%) of the model ORT quantizes with ``inputs`` as each column says."""
    row: dict[str, dict[str, float]] = {split: {} for split in splits}
    for column, (weights, activations, method, per_channel) in columns.items():
        model = quantized_model(pre, inputs, weights, activations, getattr(CalibrationMethod, method), workdir, per_channel=per_channel)
        for split, (x, y) in splits.items():
            row[split][column] = round(onnx_accuracy(model, x, y), 2)
    return row


def grid_options(pre: Path, *, symmetric: bool) -> dict[str, Any]:
    """``quantize_static`` options for int4 weights: none for ONNX Runtime's own grid [-8, 7], ``quantize-onnx``'s
    overrides for the symmetric [-7, 7] (``symmetric``)."""
    if not symmetric:
        return {}
    return {"extra_options": with_symmetric_int4_weights(pre, {"weight_type": QuantType.QInt4, "per_channel": True})["extra_options"]}
