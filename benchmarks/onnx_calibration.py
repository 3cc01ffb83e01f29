"""ONNX Runtime static quantization calibrated by each data source, on the real CIFAR-10 ResNets.

    python -m benchmarks.onnx_calibration [--teachers resnet20,resnet56] [--samples 512] [--eval test_a|heldout]

For each teacher: FP32 accuracy, then W8A8, W4A8 and W4A4 (QDQ, per-channel weights,
MinMax and Percentile calibration) calibrated by 512 real ``train_10k`` images,
Gaussian noise N(0, 1) (unclipped, as scripts feed it), uniform pixels,
``fastdfkd`` at k = 2, 5, 10 (warm-up included in its time) and ``deepinversion``
given the same wall-clock budget as ``fastdfkd`` k = 5. Accuracy on ``test_a.npz``
(``--eval heldout`` scores on 2,000 ``train_10k`` images not used for calibration
instead: use that, never the test split, for any tuning).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fastdfkd_plugin.adapters.onnx_export import onnx_accuracy

from .common.cli import benchmark_parser
from .common.data import evaluation_split, load_images
from .common.ort import accuracy_per_column, columns, prepared_onnx
from .common.plots import pyplot
from .common.report import environment, heading, publish, scored_rows, source_tables
from .common.sources import cold_source, deepinversion_seconds_per_step, timed_set
from .common.teachers import load_teacher


def calibration_sets(teacher, args) -> dict[str, tuple[np.ndarray, float]]:
    """name → (normalised inputs, synthesis seconds)."""
    real_x, _ = load_images("train_10k", args.data_dir, limit=args.samples, seed=args.seed)
    sets = {"real train_10k": (real_x.numpy(), 0.0)}

    def synthesise(name: str, **options) -> tuple[np.ndarray, float]:
        synthetic, seconds = timed_set(cold_source(name, teacher, seed=args.seed, device=args.device, **options),
                                       args.samples, args.batch_size)
        return synthetic.inputs.cpu().numpy(), seconds

    sets["gaussian"] = synthesise("gaussian", clip=False)
    sets["uniform"] = synthesise("uniform")
    for k in (2, 5, 10):
        sets[f"fastdfkd k={k}"] = synthesise("fastdfkd", steps=k)
        print(f"  fastdfkd k={k}: {sets[f'fastdfkd k={k}'][1]:.0f} s", flush=True)
    # DeepInversion at fastdfkd k=5's wall-clock: time a few steps, then fit the step count to the budget.
    budget = sets["fastdfkd k=5"][1]
    per_step = deepinversion_seconds_per_step(teacher, args.batch_size, device=args.device)
    steps = max(1, int(budget / (per_step * -(-args.samples // args.batch_size))))
    inputs, seconds = synthesise("deepinversion", steps=steps)
    sets[f"deepinversion {steps} steps"] = (inputs, seconds)
    print(f"  deepinversion: {steps} steps per batch in {seconds:.0f} s (budget {budget:.0f} s)", flush=True)
    return sets


def benchmark_teacher(name: str, args, eval_x: np.ndarray, eval_y: np.ndarray, workdir: Path) -> dict:
    teacher = load_teacher(name, args.data_dir)
    fp32, pre = prepared_onnx(teacher, workdir, name)
    result = {"teacher": name, "fp32": onnx_accuracy(fp32, eval_x, eval_y)}
    print(f"{name}: FP32 {result['fp32']:.2f}", flush=True)

    def score(inputs: np.ndarray) -> dict[str, float]:
        return accuracy_per_column(pre, inputs, eval_x, eval_y, workdir, batch_size=args.batch_size)

    return {**result, "rows": scored_rows(calibration_sets(teacher, args), score, digits=1)}


def markdown(results: dict) -> str:
    lines = heading("ONNX Runtime static quantization, calibrated without data", results,
                    "onnxruntime QDQ, per-channel weights, {samples} calibration images, accuracy (%) on {eval} ({eval_images} "
                    "images); torch {torch}, {threads} CPU threads.")
    return "\n".join(lines + source_tables(results["teachers"], columns())) + "\n"


def plot(results: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results["teachers"]), figsize=(6 * len(results["teachers"]), 4), squeeze=False)
    for ax, result in zip(axes[0], results["teachers"]):
        for row in result["rows"]:
            ax.plot(list(row["accuracy"]), list(row["accuracy"].values()), marker="o", label=row["source"])
        ax.axhline(result["fp32"], color="black", linestyle=":", label="FP32")
        ax.set_title(f"{result['teacher']}: accuracy after quantization")
        ax.set_ylabel(f"accuracy on {results['eval']} (%)")
        ax.tick_params(axis="x", rotation=45)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20,resnet56")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval", choices=["test_a", "heldout"], default="test_a")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/onnx_calibration"))
    args = parser.parse_args(argv)
    _, eval_x, eval_y = evaluation_split(args.eval, args.samples, args.data_dir, args.seed)
    results = {"environment": environment(), "samples": args.samples, "eval": args.eval, "eval_images": len(eval_y),
               "teachers": []}
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.teachers.split(","):
            results["teachers"].append(benchmark_teacher(name, args, eval_x, eval_y, Path(workdir)))
    publish(args.out, results, markdown(results))
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
