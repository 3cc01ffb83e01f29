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
import time
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from fastdfkd_plugin import get_source
from fastdfkd_plugin.adapters.onnxruntime import calibration_reader, export_onnx, onnx_accuracy, quiet_root_logger

from .cifar import INPUT_SHAPE, MEAN, STD, benchmark_parser, cold_source, load_images, load_teacher
from .report import environment, source_tables, write_results

CONFIGS = {"W8A8": (QuantType.QInt8, QuantType.QUInt8), "W4A8": (QuantType.QInt4, QuantType.QUInt8),
           "W4A4": (QuantType.QInt4, QuantType.QUInt4)}
METHODS = {"MinMax": CalibrationMethod.MinMax, "Percentile": CalibrationMethod.Percentile}
HELDOUT = 2000


def calibration_sets(teacher, args) -> dict[str, tuple[np.ndarray, float]]:
    """name → (normalised inputs, synthesis seconds)."""
    real_x, _ = load_images("train_10k", args.data_dir, limit=args.samples, seed=args.seed)
    sets = {"real train_10k": (real_x.numpy(), 0.0)}

    def synthesise(name: str, **options) -> tuple[np.ndarray, float]:
        source = cold_source(name, teacher, seed=args.seed, device=args.device, **options)
        started = time.perf_counter()
        inputs = source.synthetic_set(args.samples, args.batch_size).inputs.cpu().numpy()
        return inputs, time.perf_counter() - started

    sets["gaussian"] = synthesise("gaussian", clip=False)
    sets["uniform"] = synthesise("uniform")
    for k in (2, 5, 10):
        sets[f"fastdfkd k={k}"] = synthesise("fastdfkd", steps=k)
        print(f"  fastdfkd k={k}: {sets[f'fastdfkd k={k}'][1]:.0f} s", flush=True)
    # DeepInversion at fastdfkd k=5's wall-clock: time a few steps, then fit the step count to the budget.
    budget = sets["fastdfkd k=5"][1]
    probe = get_source("deepinversion", teacher, INPUT_SHAPE, mean=MEAN, std=STD, steps=5, device=args.device)
    started = time.perf_counter()
    probe.next_batch(args.batch_size)
    per_step = (time.perf_counter() - started) / 5
    steps = max(1, int(budget / (per_step * -(-args.samples // args.batch_size))))
    inputs, seconds = synthesise("deepinversion", steps=steps)
    sets[f"deepinversion {steps} steps"] = (inputs, seconds)
    print(f"  deepinversion: {steps} steps per batch in {seconds:.0f} s (budget {budget:.0f} s)", flush=True)
    return sets


def evaluation_split(split: str, samples: int, data_dir: Path, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(real calibration inputs, eval inputs, eval labels): ``samples`` seeded ``train_10k`` images, and
    ``test_a`` or (``heldout``) the next 2,000 of the same permutation, never used for calibration."""
    all_x, all_y = load_images("train_10k", data_dir, limit=samples + HELDOUT, seed=seed)
    eval_x, eval_y = load_images("test_a", data_dir) if split == "test_a" else (all_x[samples:], all_y[samples:])
    return all_x[:samples].numpy(), eval_x.numpy(), eval_y.numpy()


def prepared_onnx(teacher: torch.nn.Module, workdir: Path, name: str = "model",
                  input_shape: tuple[int, int, int] = INPUT_SHAPE) -> tuple[Path, Path]:
    """The teacher exported to ONNX, and that graph pre-processed for ONNX Runtime's quantizer."""
    fp32, pre = workdir / f"{name}.onnx", workdir / f"{name}.pre.onnx"
    export_onnx(teacher, torch.zeros(1, *input_shape), fp32)
    with quiet_root_logger():
        quant_pre_process(str(fp32), str(pre))
    return fp32, pre


def quantized_accuracy(pre: Path, inputs: np.ndarray, weight_type: QuantType, activation_type: QuantType,
                       method: CalibrationMethod, eval_x: np.ndarray, eval_y: np.ndarray, workdir: Path,
                       batch_size: int = 64, **options) -> float:
    """Accuracy (%) of the QDQ model (per-channel weights) calibrated on ``inputs``; ``options`` go to ``quantize_static``."""
    out = workdir / "quantized.onnx"
    with quiet_root_logger():
        quantize_static(str(pre), str(out), calibration_reader(pre, inputs, batch_size), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=weight_type, activation_type=activation_type, calibrate_method=method,
                        **options)
    return onnx_accuracy(out, eval_x, eval_y)


def benchmark_teacher(name: str, args, eval_x: np.ndarray, eval_y: np.ndarray, workdir: Path) -> dict:
    teacher = load_teacher(name, args.data_dir)
    fp32, pre = prepared_onnx(teacher, workdir, name)
    result = {"teacher": name, "fp32": onnx_accuracy(fp32, eval_x, eval_y), "rows": []}
    print(f"{name}: FP32 {result['fp32']:.2f}", flush=True)
    for source, (inputs, seconds) in calibration_sets(teacher, args).items():
        row = {"source": source, "synthesis_seconds": seconds, "accuracy": {}}
        for config, (wtype, atype) in CONFIGS.items():
            for method_name, method in METHODS.items():
                row["accuracy"][f"{config} {method_name}"] = quantized_accuracy(pre, inputs, wtype, atype, method, eval_x,
                                                                                eval_y, workdir, args.batch_size)
        print(f"  {source}: " + ", ".join(f"{k} {v:.1f}" for k, v in row["accuracy"].items()), flush=True)
        result["rows"].append(row)
    return result


def markdown(results: dict) -> str:
    env = results["environment"]
    columns = [f"{c} {m}" for c in CONFIGS for m in METHODS]
    lines = ["# ONNX Runtime static quantization, calibrated without data", "",
             f"Command: `{env['command']}`  ",
             f"onnxruntime QDQ, per-channel weights, {results['samples']} calibration images, accuracy (%) on "
             f"{results['eval']} ({results['eval_images']} images); torch {env['torch']}, {env['threads']} CPU threads.", ""]
    return "\n".join(lines + source_tables(results["teachers"], columns)) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20,resnet56")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval", choices=["test_a", "heldout"], default="test_a")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/onnx_calibration"))
    args = parser.parse_args()
    _, eval_x, eval_y = evaluation_split(args.eval, args.samples, args.data_dir, args.seed)
    results = {"environment": environment(), "samples": args.samples, "eval": args.eval, "eval_images": len(eval_y),
               "teachers": []}
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.teachers.split(","):
            results["teachers"].append(benchmark_teacher(name, args, eval_x, eval_y, Path(workdir)))
    write_results(args.out.with_suffix(".json"), args.out.with_suffix(".md"), results, markdown(results))
    plot(results, args.out.with_suffix(".png"))
    print(markdown(results))


if __name__ == "__main__":
    main()
