"""ONNX Runtime's own int4 weight grid against the symmetric [-7, 7] grid ``quantize-onnx`` uses, per calibration set.

    python -m benchmarks.int4_grid [--teachers resnet20,resnet56,mobilenet_v1_050_64,vit] [--samples 256] [--seeds 0,1,2]

ONNX Runtime quantizes symmetric int4 weights onto [-8, 7] with scale absmax / 7.5, so each
channel's largest positive weight rounds to 8 and is clipped to 7. ``quantize_datafree`` and
``quantize-onnx`` put them on [-7, 7] with scale absmax / 7 (``symmetric_int4_weights``), the
grid of AMD Quark and Brevitas. For each teacher and seed, three calibration sets of
``--samples`` images: real ``train_10k`` images (the seed's own subset), N(0, 1) noise, and
the set ``quantize-onnx`` synthesises for the activation width (``fastdfkd`` from cold with
``calibration_source_options``: the ``auto-calibration`` prior at 4-bit activations, the
source's own at 8-bit). Each is scored at W4A8 MinMax and W4A4 MinMax / Percentile,
per-channel QDQ, on both grids, on 2,000 held-out ``train_10k`` images and on ``test_a``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
from onnxruntime.quantization import CalibrationMethod, QuantType

from .common.cli import benchmark_parser, int_list
from .common.ort import grid_options, quantized_model, seed_rows, teacher_under_test
from .common.plots import seed_bars
from .common.report import environment, heading, paired_table, publish, teacher_heading

SOURCES = ("real", "gaussian", "fastdfkd")
# column: (activation type, calibrator); weights are int4 per-channel throughout
COLUMNS = {"W4A8 MinMax": (QuantType.QUInt8, "MinMax"), "W4A4 MinMax": (QuantType.QUInt4, "MinMax"),
           "W4A4 Percentile": (QuantType.QUInt4, "Percentile")}
GRIDS = ("ORT [-8, 7]", "[-7, 7]")


def run_teacher(name: str, args) -> dict[str, Any]:
    with teacher_under_test(name, args.samples, args.seeds, args.data_dir, args.seed) as under_test:
        options = {grid: grid_options(under_test.pre, symmetric=grid == GRIDS[1]) for grid in GRIDS}

        def models(sets: dict[int, np.ndarray]) -> Iterator[tuple[str, Path]]:
            for column, (activations, method) in COLUMNS.items():
                bits = 4 if activations == QuantType.QUInt4 else 8
                for grid in GRIDS:
                    yield f"{column}, {grid}", quantized_model(under_test.pre, sets[bits], QuantType.QInt4, activations,
                                                                getattr(CalibrationMethod, method), under_test.workdir,
                                                                **options[grid])

        rows = seed_rows(under_test, name, SOURCES, args.seeds, args.samples, models)
    return {"teacher": name, "fp32": under_test.fp32, "rows": rows}


def markdown(results: dict) -> str:
    lines = heading("int4 weights: ONNX Runtime's grid [-8, 7] against quantize-onnx's [-7, 7]", results,
                    "{samples} images per set; ONNX Runtime QDQ, per-channel int4 weights; mean ± standard deviation over "
                    "seeds {seeds}; {threads} threads. fastdfkd: the set quantize-onnx synthesises for the activation width. "
                    "Not a timing run.")
    for teacher in results["teachers"]:
        lines += [teacher_heading(teacher)]
        for split in ("test_a", "heldout"):
            lines += ["", f"Accuracy (%) on {split}, each column on both grids, and the gain of [-7, 7] (mean over seeds of the per-seed difference):", "",
                      *paired_table(teacher["rows"], SOURCES, split, list(COLUMNS), GRIDS)]
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """test_a accuracy per column, a bar per source and grid (mean over seeds, standard deviation as the error bar)."""
    seed_bars(results, path, list(COLUMNS), [(source, grid) for source in SOURCES for grid in GRIDS],
              lambda teacher, column, bar: [row["accuracy"]["test_a"][f"{column}, {bar[1]}"] for row in teacher["rows"]
                                            if row["source"] == bar[0]], hatched=GRIDS[0])


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20",
                        help="CIFAR-10 teachers of benchmarks.common.teachers; the results go to int4_grid_<teachers>.*")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    results = {"samples": args.samples, "seeds": args.seeds, "environment": environment(),
               "teachers": [run_teacher(name, args) for name in args.teachers.split(",")]}
    stem = args.out / f"int4_grid_{'_'.join(args.teachers.split(','))}"
    publish(stem, results, markdown(results))
    plot(results, stem.with_suffix(".png"))


if __name__ == "__main__":
    main()
