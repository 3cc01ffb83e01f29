"""MinMax ranges from the whole calibration set against the mean of each 64-image batch's extremes.

    python -m benchmarks.batch_averaged_ranges [--teachers resnet20,resnet56,mobilenet_v1_050_64] [--samples 512]
                                               [--seeds 0,1,2] [--sources fastdfkd,real,gaussian]

``quantize-onnx`` calibrates MinMax on the mean over groups of 64 calibration inputs of each group's
extremes (``range_group``, adapters/range_groups.py), because the largest activation of a synthetic
set grows with the set: PaddleOCR's recognizer read 82 % of the OCR benchmark's test words at the
default 512 images with plain MinMax. This checks what the choice costs or gains on the classifiers.
For each teacher and seed: the set ``quantize-onnx`` makes for each activation width (``--samples``
images, batch 64, from cold), real ``train_10k`` images and noise, quantized W8A8 (int8 weights,
uint8 activations) and W4A4 (int4 weights on quantize-onnx's [-7, 7] grid, uint4 activations),
per-channel QDQ, scored on held-out ``train_10k`` and ``test_a``. "batch-averaged" is ONNX Runtime's
``CalibMovingAverage`` over batches of 64, the mean of each batch's extremes: with one batch per
group, exactly the ranges of ``range_group=64``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
from onnxruntime.quantization import CalibrationMethod, QuantType

from .common.cli import benchmark_parser, choice_list, int_list
from .common.ort import grid_options, quantized_model, seed_rows, teacher_under_test
from .common.plots import seed_bars
from .common.report import environment, heading, paired_table, publish, teacher_heading

SOURCES = ("fastdfkd", "real", "gaussian")
# column: (weight type, activation type)
CONFIGS = {"W8A8": (QuantType.QInt8, QuantType.QUInt8), "W4A4": (QuantType.QInt4, QuantType.QUInt4)}
RANGES = {"whole-set MinMax": False, "batch-averaged": True}


def run_teacher(name: str, args) -> dict[str, Any]:
    with teacher_under_test(name, args.samples, args.seeds, args.data_dir, args.seed) as under_test:
        int4_grid = grid_options(under_test.pre, symmetric=True)["extra_options"]

        def models(sets: dict[int, np.ndarray]) -> Iterator[tuple[str, Path]]:
            for config, (weights, activations) in CONFIGS.items():
                for ranges, averaged in RANGES.items():
                    extra = {"CalibMovingAverage": averaged, **(int4_grid if weights == QuantType.QInt4 else {})}
                    yield f"{config}, {ranges}", quantized_model(under_test.pre, sets[4 if config == "W4A4" else 8], weights,
                                                                 activations, CalibrationMethod.MinMax, under_test.workdir,
                                                                 extra_options=extra)

        rows = seed_rows(under_test, name, args.sources, args.seeds, args.samples, models)
    return {"teacher": name, "fp32": under_test.fp32, "rows": rows}


def markdown(results: dict) -> str:
    lines = heading("MinMax over the whole calibration set against the mean of each batch's extremes", results,
                    "{samples} images per set, calibrated in batches of 64; ONNX Runtime QDQ, per-channel weights (int4 on "
                    "[-7, 7]); mean ± standard deviation over seeds {seeds}; {threads} threads. fastdfkd: the set "
                    "quantize-onnx synthesises for the activation width. Not a timing run.")
    for teacher in results["teachers"]:
        lines += [teacher_heading(teacher)]
        for split in ("heldout", "test_a"):
            lines += ["", f"Accuracy (%) on {split}; gain: batch-averaged minus whole-set (mean over seeds of the per-seed difference):", "",
                      *paired_table(teacher["rows"], results["sources"], split, list(CONFIGS), tuple(RANGES))]
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """test_a accuracy per source, a bar per configuration and ranges (mean over seeds, standard deviation as the error bar)."""
    seed_bars(results, path, results["sources"], [(config, ranges) for config in CONFIGS for ranges in RANGES],
              lambda teacher, source, bar: [row["accuracy"]["test_a"][", ".join(bar)] for row in teacher["rows"]
                                            if row["source"] == source], hatched="batch-averaged")


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20",
                        help="CIFAR-10 teachers of benchmarks.common.teachers; the results go to batch_averaged_ranges_<teachers>.*")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    parser.add_argument("--sources", type=choice_list(SOURCES), default=list(SOURCES))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    results = {"samples": args.samples, "seeds": args.seeds, "sources": args.sources, "environment": environment(),
               "teachers": [run_teacher(name, args) for name in args.teachers.split(",")]}
    stem = args.out / f"batch_averaged_ranges_{'_'.join(args.teachers.split(','))}"
    publish(stem, results, markdown(results))
    plot(results, stem.with_suffix(".png"))


if __name__ == "__main__":
    main()
