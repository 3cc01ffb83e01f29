"""4-bit quantization with reconstruction (AMD Quark's AdaRound on ONNX, Brevitas' GPTQ on PyTorch) against plain calibration, per data source.

    python -m benchmarks.reconstruction [--teachers resnet20] [--samples 256] [--seeds 0,1,2] [--iterations 100]
                                        [--eval test_a|heldout] [--sources fastdfkd,gaussian,real] [--configs W4A8,W4A4]
                                        [--prior auto|auto-calibration|NAME]

For each teacher and seed, three calibration sets of ``--samples`` images: ``fastdfkd``
(defaults, from cold; ``--prior`` sets its prior), N(0, 1) ``gaussian`` noise and real ``train_10k`` images (a
different random subset per seed). Each set quantizes the teacher at W4A8 and W4A4
(per-channel weights) four ways: ONNX Runtime MinMax and Percentile, Quark's own MinMax
calibration (symmetric 16-level weights: what Quark does without reconstruction), and
Quark AdaRound on top of it (``--iterations`` steps per layer); then, in PyTorch, Brevitas
round-to-nearest (its percentile activation ranges) and Brevitas GPTQ on top of it. Accuracy on
``test_a`` (``--eval heldout``: 2,000 ``train_10k`` images no set uses; tune there).
The table gives mean ± standard deviation over the seeds; the plot, each source's bars.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fastdfkd_plugin.adapters.brevitas import quantize_datafree as brevitas_quantize
from fastdfkd_plugin.adapters.onnx_export import onnx_accuracy
from fastdfkd_plugin.adapters.onnxruntime import calibration_reader
from fastdfkd_plugin.adapters.quark import quantize_reconstructed

from .common.cli import benchmark_parser, choice_list, int_list
from .common.data import accuracy, seeded_real_sets
from .common.ort import CONFIGS, METHODS, prepared_onnx, quantized_accuracy
from .common.plots import pyplot
from .common.report import environment, heading, mean_spread, publish
from .common.sources import cold_source, timed_set
from .common.teachers import load_teacher

BITS = {"W4A8": ("int4", "uint8"), "W4A4": ("int4", "uint4")}  # Quark's names for CONFIGS' types
SOURCES = ("fastdfkd", "gaussian", "real")


def calibration_set(source: str, model, args, seed: int, real: np.ndarray) -> tuple[np.ndarray, float]:
    """(normalised inputs, seconds to make them) for one source and seed; ``real`` holds the real images of this seed."""
    if source == "real":
        return real, 0.0
    options = {"clip": False} if source == "gaussian" else {"prior": args.prior}
    data, seconds = timed_set(cold_source(source, model, seed=seed, **options), args.samples)
    return data.inputs.numpy(), seconds


def scores(model, pre: Path, inputs: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray, workdir: Path, iterations: int,
           configs: list[str]) -> dict:
    """Column → (accuracy %, quantization seconds) for each of ``configs`` and every way of quantizing."""
    row = {}
    for config in configs:
        weight_type, activation_type = BITS[config]
        activation_bits = 8 if activation_type == "uint8" else 4
        ort_weights, ort_activations, _ = CONFIGS[config]
        for method_name, method in METHODS.items():
            started = time.perf_counter()
            score = quantized_accuracy(pre, inputs, ort_weights, ort_activations, method, eval_x, eval_y, workdir)
            row[f"{config} ORT {method_name}"] = (score, time.perf_counter() - started)
        for label, method, tuning in (("Quark MinMax", None, {}), ("AdaRound", "adaround", {"iterations": iterations})):
            started = time.perf_counter()
            out = workdir / "quark.onnx"
            quantize_reconstructed(pre, out, calibration_reader(pre, inputs, 32), method, weight_type=weight_type,
                                   activation_type=activation_type, batch_size=32, **tuning)
            row[f"{config} {label}"] = (onnx_accuracy(out, eval_x, eval_y), time.perf_counter() - started)
        for label, method in (("Brevitas RTN", "none"), ("Brevitas GPTQ", "gptq")):
            started = time.perf_counter()
            quantized = brevitas_quantize(model, torch.from_numpy(inputs), weight_bits=4, activation_bits=activation_bits,
                                                   method=method, batch_size=32, progress=False)
            with torch.no_grad():
                row[f"{config} {label}"] = (accuracy(quantized, torch.from_numpy(eval_x), torch.from_numpy(eval_y)),
                                            time.perf_counter() - started)
    return row


def run_teacher(name: str, args) -> dict:
    model = load_teacher(name, args.data_dir)
    real, eval_x, eval_y = seeded_real_sets(args.eval, args.samples, args.seeds, args.data_dir, args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        fp32, pre = prepared_onnx(model, workdir, name)
        fp32_accuracy = onnx_accuracy(fp32, eval_x, eval_y)
        print(f"{name}: FP32 {fp32_accuracy:.2f} %", flush=True)
        for seed in args.seeds:
            for source in args.sources:
                inputs, seconds = calibration_set(source, model, args, seed, real[seed])
                row = scores(model, pre, inputs, eval_x, eval_y, workdir, args.iterations, args.configs)
                rows.append({"source": source, "seed": seed, "set_seconds": round(seconds, 1),
                             "accuracy": {column: round(value[0], 2) for column, value in row.items()},
                             "quantize_seconds": {column: round(value[1], 1) for column, value in row.items()}})
                print(f"  {source} seed {seed}: " + ", ".join(f"{c} {v[0]:.2f}" for c, v in row.items()), flush=True)
    return {"teacher": name, "fp32": fp32_accuracy, "rows": rows}


def markdown(results: dict) -> str:
    lines = heading("4-bit quantization: AdaRound (AMD Quark) and GPTQ (Brevitas) against plain calibration, per calibration source",
                    results, "{samples} calibration images per set, AdaRound {iterations} iterations per layer; accuracy % on "
                    "{eval}, mean ± standard deviation over seeds {seeds}; {threads} threads; fastdfkd sets with prior={prior}.")
    columns = list(results["teachers"][0]["rows"][0]["accuracy"])
    for teacher in results["teachers"]:
        lines += [f"## {teacher['teacher']} (FP32 {teacher['fp32']:.2f} %)", "",
                  "| source | set s | " + " | ".join(columns) + " |", "| --- | --- |" + " --- |" * len(columns)]
        for source in results["sources"]:
            rows = [row for row in teacher["rows"] if row["source"] == source]
            cells = [mean_spread([row["accuracy"][column] for row in rows]) for column in columns]
            lines.append(f"| {source} | {mean_spread([row['set_seconds'] for row in rows])} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Bars per column, one per source (mean, with the seeds' standard deviation as error bars)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(results["teachers"]), figsize=(14, 4.5), squeeze=False)
    for axis, teacher in zip(axes[0], results["teachers"]):
        columns = list(teacher["rows"][0]["accuracy"])
        width = 0.8 / len(results["sources"])
        for index, source in enumerate(results["sources"]):
            values = np.array([[row["accuracy"][column] for column in columns] for row in teacher["rows"] if row["source"] == source])
            axis.bar(np.arange(len(columns)) + index * width, values.mean(0), width, yerr=values.std(0), label=source)
        axis.axhline(teacher["fp32"], color="grey", linestyle="--", label="FP32")
        axis.set_xticks(np.arange(len(columns)) + width, columns, rotation=30, ha="right")
        axis.set(title=teacher["teacher"], ylabel=f"accuracy on {results['eval']} (%)")
        axis.set_ylim(0, 100)  # room above the FP32 line for the legend, clear of the bars
        axis.legend(loc="upper center", ncol=4)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=100, help="AdaRound steps per layer")
    parser.add_argument("--eval", choices=("test_a", "heldout"), default="test_a")
    parser.add_argument("--sources", type=choice_list(SOURCES), default=list(SOURCES))
    parser.add_argument("--configs", type=choice_list(BITS), default=list(BITS))
    parser.add_argument("--prior", default="auto", help="the fastdfkd sets' prior (auto-calibration: the quantize commands' at 4 bits)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    results = {"samples": args.samples, "iterations": args.iterations, "eval": args.eval, "seeds": args.seeds, "prior": args.prior,
               "sources": args.sources, "environment": environment(),
               "teachers": [run_teacher(name, args) for name in args.teachers.split(",")]}
    name = "_".join(["reconstruction", *([] if args.samples == parser.get_default("samples") else [f"{args.samples}images"]),
                     *([] if args.eval == "test_a" else [args.eval]),
                     *([] if args.configs == list(BITS) else [c.lower() for c in args.configs]),
                     *([] if args.prior == "auto" else [args.prior.replace("-", "_")])])
    publish(args.out / name, results, markdown(results))
    plot(results, args.out / f"{name}.png")


if __name__ == "__main__":
    main()
