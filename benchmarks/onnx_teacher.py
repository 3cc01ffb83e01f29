"""An ONNX file as the teacher: what BatchNorm folding at export costs data-free calibration, and how long quantize-onnx takes.

    python -m benchmarks.onnx_teacher [--teacher resnet20] [--samples 256] [--seeds 0,1,2]

The teacher three ways: the torch model; an ONNX export that keeps its BatchNormalization
nodes (``do_constant_folding=False``); and the default export, which folds every BatchNorm
into the convolution before it (what ``torch.onnx.export`` writes in eval mode). Each gives
``fastdfkd`` calibration sets from cold with the options the quantize commands use
(``calibration_source_options``): ``auto-calibration`` for 4-bit activations, ``auto`` for 8-bit
(``batchnorm`` where BatchNorm survives; on the folded graph ``generic``, weighted 0.3 rather
than 3). Real ``train_10k`` images (a different subset per seed) and N(0, 1) noise are the
references. Every set calibrates the same pre-processed
ONNX graph with ONNX Runtime QDQ: W4A4 and W4A8 per-channel, W8A8 per-tensor, MinMax and
Percentile; accuracy on ``test_a``, mean ± std over seeds.

Then ``fastdfkd quantize-onnx --onnx <folded export>`` runs as a user would run it (its
defaults: 512 images, W8A8), in a fresh process with an empty warm-state cache, timed
from the command's start to its exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import QuantType

from fastdfkd_plugin import Teacher, calibration_source_options
from fastdfkd_plugin.adapters.onnx_export import onnx_accuracy

from .common.cli import benchmark_parser, int_list
from .common.data import INPUT_SHAPE, MEAN, STD, seeded_real_sets
from .common.ort import prepared_onnx, split_scores
from .common.plots import pyplot
from .common.report import environment, heading, mean_spread, publish
from .common.sources import cold_source, timed_set
from .common.teachers import load_teacher

COLUMNS = {f"{config} {method}": (weights, activations, method, per_channel)
           for config, weights, activations, per_channel in (("W4A4", QuantType.QInt4, QuantType.QUInt4, True),
                                                              ("W4A8", QuantType.QInt4, QuantType.QUInt8, True),
                                                              ("W8A8 per-tensor", QuantType.QInt8, QuantType.QUInt8, False))
           for method in ("MinMax", "Percentile")}
TEACHERS = ("torch model", "ONNX, BatchNorm nodes kept", "ONNX, BatchNorm folded (default export)")
SOURCES = ("real", "gaussian", *(f"fastdfkd from the {teacher}" for teacher in TEACHERS))


def activation_bits(column: str) -> int:
    """The activation bit width of a column: what the quantize commands pick their calibration prior by."""
    return 4 if column.startswith("W4A4") else 8


def teachers(model: torch.nn.Module, workdir: Path) -> dict[str, Teacher]:
    """The torch teacher and its two ONNX exports, each as a Teacher (the exports run through fastdfkd's converter)."""
    kept, folded = workdir / "kept.onnx", workdir / "folded.onnx"
    for path, folding in ((kept, False), (folded, True)):
        torch.onnx.export(model, torch.zeros(1, *INPUT_SHAPE), str(path), input_names=["input"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}}, do_constant_folding=folding)
    return {name: Teacher(teacher, INPUT_SHAPE, mean=MEAN, std=STD, device="cpu")
            for name, teacher in zip(TEACHERS, (model, kept, folded))}


def run_seed(seed: int, built: dict[str, Teacher], real: np.ndarray, pre: Path, test: tuple[np.ndarray, np.ndarray],
             samples: int, workdir: Path) -> list[dict[str, Any]]:
    rows = []
    splits = {"test_a": test}
    for source in SOURCES:
        if source in ("real", "gaussian"):
            inputs = real if source == "real" else cold_source("gaussian", built[TEACHERS[0]], seed=seed, clip=False).synthetic_set(samples).inputs.numpy()
            accuracy = split_scores(pre, inputs, splits, workdir, COLUMNS)["test_a"]
            rows.append({"source": source, "seed": seed, "priors": {}, "set_seconds": {}, "accuracy": accuracy})
        else:
            teacher = built[source.removeprefix("fastdfkd from the ")]
            sets: dict[int, tuple[np.ndarray, float]] = {}
            priors: dict[int, str] = {}
            for bits in sorted({activation_bits(column) for column in COLUMNS}):
                data_source = cold_source("fastdfkd", teacher, seed=seed, **calibration_source_options("fastdfkd", bits, teacher))
                synthetic, seconds = timed_set(data_source, samples)
                sets[bits] = (synthetic.inputs.numpy(), round(seconds, 1))
                used = data_source.settings()
                priors[bits] = f"{used['prior']} ×{used['loss_weights']['prior']:g}"
            accuracy = {}
            for column, settings in COLUMNS.items():
                accuracy |= split_scores(pre, sets[activation_bits(column)][0], splits, workdir, {column: settings})["test_a"]
            rows.append({"source": source, "seed": seed, "priors": priors,
                         "set_seconds": {bits: seconds for bits, (_, seconds) in sets.items()}, "accuracy": accuracy})
        print(f"  seed {seed} {source}: {rows[-1]['accuracy']}", flush=True)
    return rows


def timed_command(onnx_file: Path, test: tuple[np.ndarray, np.ndarray], workdir: Path) -> dict[str, Any]:
    """``fastdfkd quantize-onnx --onnx FILE`` in a fresh process and an empty cache: seconds, and the result's accuracy."""
    out = workdir / "command.int8.onnx"
    command = [sys.executable, "-c", "import sys; from fastdfkd_plugin.cli.entry import main; sys.exit(main())", "quantize-onnx",
               "--onnx", str(onnx_file), "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)),
               "--out", str(out), "--quiet"]
    environment_variables = {**os.environ, "FASTDFKD_CACHE_DIR": str(workdir / "empty-cache")}
    started = time.perf_counter()
    completed = subprocess.run(command, env=environment_variables, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    print(completed.stdout, flush=True)
    return {"command": "fastdfkd quantize-onnx --onnx folded.onnx --mean ... --std ... --out model.int8.onnx",
            "seconds": round(seconds, 1), "test_a_accuracy": round(onnx_accuracy(out, *test), 2), "stdout": completed.stdout}


def markdown(results: dict[str, Any]) -> str:
    lines = heading("An ONNX file as the teacher: what BatchNorm folding costs calibration", results,
                    "{teacher}; {samples} images per set; ONNX Runtime QDQ on the same pre-processed graph; accuracy (%) on "
                    "test_a, mean ± std over seeds {seeds}; {threads} threads. fastdfkd sets use the quantize commands' prior "
                    "and weight for the activation bit width: auto-calibration for the W4A4 columns, auto for the rest.")
    lines += [f"FP32: {results['fp32']:.2f} %.", "", "| calibration data | prior × weight (4-bit / 8-bit activations) | " + " | ".join(COLUMNS) + " |",
              "| --- | --- |" + " --- |" * len(COLUMNS)]
    for source in SOURCES:
        rows = [row for row in results["rows"] if row["source"] == source]
        priors = " / ".join(rows[0]["priors"].values()) if rows[0]["priors"] else "—"
        lines.append(f"| {source} | {priors} | " + " | ".join(mean_spread([row["accuracy"][c] for row in rows]) for c in COLUMNS) + " |")
    command = results["command_run"]
    lines += ["", f"`{command['command']}` from an empty cache in a fresh process: **{command['seconds']:.0f} s** "
                  f"(512 images, W8A8 MinMax); the quantized model scores {command['test_a_accuracy']:.2f} % on test_a.", ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Accuracy per calibration set, MinMax columns, mean and std over seeds."""
    plt = pyplot()
    shown = [column for column in COLUMNS if column.endswith("MinMax")]
    figure, axis = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(SOURCES)
    means = []
    for index, source in enumerate(SOURCES):
        rows = [row for row in results["rows"] if row["source"] == source]
        values = [[row["accuracy"][c] for row in rows] for c in shown]
        means += [np.mean(v) for v in values]
        axis.bar(np.arange(len(shown)) + index * width, [np.mean(v) for v in values], width, yerr=[np.std(v) for v in values],
                 label=source, capsize=2)
    axis.set_xticks(np.arange(len(shown)) + width * (len(SOURCES) - 1) / 2, shown)
    axis.set(ylabel="test_a accuracy (%)", title=f"{results['teacher']}: calibration sets by teacher form",
             ylim=(max(0, min(means) - 10), max(means) + 12))
    axis.legend(fontsize=7, loc="upper left", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teacher", default="resnet20", help="a BatchNorm teacher of benchmarks.common.teachers")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    model = load_teacher(args.teacher, args.data_dir)
    real, test_x, test_y = seeded_real_sets("test_a", args.samples, args.seeds, args.data_dir, args.seed)
    test = (test_x, test_y)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        fp32, pre = prepared_onnx(model, workdir, args.teacher)
        fp32_accuracy = round(onnx_accuracy(fp32, *test), 2)
        built = teachers(model, workdir)
        rows = [row for seed in args.seeds
                for row in run_seed(seed, built, real[seed], pre, test, args.samples, workdir)]
        command_run = timed_command(workdir / "folded.onnx", test, workdir)
    results = {"teacher": args.teacher, "samples": args.samples, "seeds": args.seeds, "environment": environment(),
               "fp32": fp32_accuracy, "rows": rows, "command_run": command_run}
    stem = args.out / f"onnx_teacher_{args.teacher}"
    publish(stem, results, markdown(results))
    plot(results, stem.with_suffix(".png"))


if __name__ == "__main__":
    main()
