"""PaddleOCR's three ONNX graphs as the ``rapidocr-onnxruntime`` wheel ships them: one table for every benchmark.

Read in place from the installed wheel (the ``test`` extra), never copied; rapidocr normalises
the inputs of all three with mean = std = 0.5.
"""

from __future__ import annotations

from pathlib import Path

# name: (file in rapidocr_onnxruntime/models, input shape C×H×W)
GRAPHS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "det": ("ch_PP-OCRv4_det_infer.onnx", (3, 320, 320)),  # DBNet text detector, a probability map
    "cls": ("ch_ppocr_mobile_v2.0_cls_infer.onnx", (3, 48, 192)),  # text direction, 2 classes
    "rec": ("ch_PP-OCRv4_rec_infer.onnx", (3, 48, 320)),  # SVTR-LCNet recognizer, CTC over 6,625 symbols
}
MEAN_STD = (0.5, 0.5, 0.5)


def graph_path(name: str) -> Path:
    """Where the installed wheel keeps the graph ``name`` (``det``, ``cls`` or ``rec``)."""
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).parent / "models" / GRAPHS[name][0]
