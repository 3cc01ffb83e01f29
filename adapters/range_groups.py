"""MinMax ranges that do not grow with the calibration set: the mean over fixed-size groups of each group's extremes.

MinMax takes each tensor's range from the single most extreme calibration input, so a larger
set gives wider ranges and coarser rounding. Synthetic sets have heavy tails: PaddleOCR's
recognizer read 96.3 % of validation words calibrated on 64 of 512 synthetic images and
92.8 % on all 512. Averaging the extremes of groups of :data:`RANGE_GROUP` inputs does not grow
with the set, and does not depend on the batches memory allows
(ONNX Runtime's own ``CalibMovingAverage`` averages per batch, so a smaller batch narrows it).
ONNX Runtime calibrates each group (its MinMax calibrator, so its choice of tensors); the mean
goes to its calibration cache, from which ``quantize_static`` quantizes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

RANGE_GROUP = 64  # inputs per group: the batch the CIFAR results were calibrated in (docs/onnxruntime.md)


def group_batch(batch: int, group: int) -> int:
    """The largest calibration batch of at most ``batch`` inputs that divides ``group``, so groups are whole batches."""
    return max(divisor for divisor in range(1, min(batch, group) + 1) if group % divisor == 0)


def group_bounds(batches: int, per_group: int) -> list[tuple[int, int]]:
    """(first, end) batch indices of each group; a short last group joins the one before it."""
    starts = list(range(0, batches, per_group))
    if len(starts) > 1 and batches - starts[-1] < per_group:
        starts.pop()
    return list(zip(starts, [*starts[1:], batches]))


def write_grouped_minmax_ranges(model_in: Path, reader: Any, per_group: int, options: dict[str, Any], cache: Path) -> None:
    """Calibrate ``model_in`` with ONNX Runtime's MinMax on each group of ``per_group`` of ``reader``'s batches and
    write the mean of the groups' ranges to ``cache`` (``quantize_static``'s ``calibration_cache_path``).

    ``reader`` restricts itself with ``set_range(first, end)`` (:func:`~.onnxruntime.calibration_reader`'s does);
    ``options`` are ``quantize_static``'s (its op types, providers and ``CalibTensorRangeSymmetric`` apply).
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, create_calibrator, save_tensors_data

    symmetric = bool((options.get("extra_options") or {}).get("CalibTensorRangeSymmetric", False))
    groups = []
    for first, end in group_bounds(len(reader), per_group):
        with tempfile.TemporaryDirectory(prefix="fastdfkd-ranges-") as folder:
            calibrator = create_calibrator(model_in, options.get("op_types_to_quantize"),
                                           augmented_model_path=str(Path(folder) / "augmented.onnx"),
                                           calibrate_method=CalibrationMethod.MinMax, providers=options.get("calibration_providers"),
                                           extra_options={"symmetric": symmetric})
            reader.set_range(first, end)
            calibrator.collect_data(reader)
            groups.append(calibrator.compute_data())
            del calibrator  # its session holds the augmented graph
    reader.set_range(0, len(reader))
    def mean(name: str, end: int) -> np.ndarray:
        values = [group[name].range_value[end] for group in groups]
        return np.mean(values, axis=0).astype(values[0].dtype)  # ONNX Runtime takes float16/32 ranges only

    averaged = {name: TensorData(lowest=mean(name, 0), highest=mean(name, 1)) for name in groups[0].data}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, averaged), cache)
