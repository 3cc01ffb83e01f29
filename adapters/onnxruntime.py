"""ONNX Runtime: synthetic batches as a ``CalibrationDataReader`` for ``quantize_static``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

try:
    from onnxruntime.quantization import CalibrationDataReader
except ImportError as exc:  # pragma: no cover - depends on the installed extra
    raise ImportError("the ONNX Runtime adapter needs onnxruntime: pip install 'fastdfkd-plugin[onnxruntime]'") from exc


class SourceCalibrationReader(CalibrationDataReader):
    """Feeds fixed batches (e.g. a :class:`~fastdfkd_plugin.SyntheticSet`) to ONNX Runtime's calibrators.

    Batches are materialised once, so calibration is deterministic and replayable;
    ``rewind``, ``__len__`` and ``set_range`` support ONNX Runtime's strided calibration.
    """

    def __init__(self, batches: Iterable[object], input_name: str) -> None:
        self.input_name = input_name
        self.batches = [np.ascontiguousarray(_to_numpy(b), dtype=np.float32) for b in batches]
        self.set_range(0, len(self.batches))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= self._end:
            return None
        self._position += 1
        return {self.input_name: self.batches[self._position - 1]}

    def rewind(self) -> None:
        self._position = self._start

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self.batches))
        self.rewind()


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, input_name: str = "input") -> None:
    """Export ``model`` with a dynamic batch dimension (TorchScript exporter, no extra packages)."""
    was_training = model.training
    model.eval()
    try:
        torch.onnx.export(
            model, (example,), str(path), input_names=[input_name], output_names=["logits"],
            dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
        )
    finally:
        model.train(was_training)


def _to_numpy(batch: object) -> np.ndarray:
    inputs = getattr(batch, "inputs", batch)  # a Batch, a tensor or an array
    return inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
