"""Data-free calibration of teachers without BatchNorm: a trained ViT and BN-folded ResNets.

    python -m benchmarks.bn_free [--teachers vit,resnet20-folded,resnet56-folded] [--seeds 0,1,2] [--eval test_a|heldout]

Teachers: the ~1 M-parameter ViT of :mod:`benchmarks.vit_teacher` (trained once, cached;
LayerNorm and attention, so ``prior=auto`` picks ``transformer``) and the shared ResNet-20
or ResNet-56 with every BatchNorm folded into the convolution before it (what an export leaves;
``auto`` picks ``generic``). Calibration sets of 512 images per seed: real ``train_10k``
images, Gaussian noise N(0, 1) (unclipped, as scripts feed it), ``fastdfkd`` k = 5 from
cold with the automatic prior and, as ablations, the ViT with the ``generic`` prior and,
for a folded ResNet, the *unfolded* ResNet with its ``batchnorm`` prior (the same
function, so the goal is to come within 2 points of that row). Each set calibrates
ONNX Runtime (QDQ, per-channel weights, MinMax and Percentile: W8A8/W4A8/W4A4 for the
ResNet; W8A8/W4A8 and, quantizing only MatMul/Gemm as ORT suggests for transformers,
W8A4/W4A4 for the ViT) and torchao PT2E W8A8 (X86InductorQuantizer, per-channel). Accuracy on ``test_a`` (``--eval heldout``:
2,000 ``train_10k`` images never used for calibration, for any tuning). A preview grid
of each teacher's ``fastdfkd`` images is written beside the results.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import QuantType
from torch import nn

from fastdfkd_plugin import LossWeights, Teacher, image_grid, make_prior, write_png
from fastdfkd_plugin.adapters.generic import calibration_data
from fastdfkd_plugin.adapters.onnx_export import onnx_accuracy
from fastdfkd_plugin.adapters.torchao import default_quantizer, quantize_pt2e_datafree

from .common.cli import benchmark_parser, float_list, int_list
from .common.data import INPUT_SHAPE, MEAN, STD, accuracy, evaluation_split
from .common.ort import CONFIGS, QuantConfig, accuracy_per_column, columns, prepared_onnx
from .common.report import environment, heading, write_results
from .common.sources import cold_source, timed_set
from .common.teachers import FOLDED, load_teacher

SAMPLES = 512
PT2E = "PT2E W8A8"
# Transformers: 4-bit activations everywhere (LayerNorm, Softmax, GELU too) leave the ViT at chance whatever the
# calibration; ORT's transformer setting quantizes only the matrix products, where 4 bits is where calibration shows.
MATMUL_ONLY = {"op_types_to_quantize": ["MatMul", "Gemm"]}
VIT_CONFIGS: dict[str, QuantConfig] = {"W8A8": CONFIGS["W8A8"], "W4A8": CONFIGS["W4A8"],
                                       "W8A4 MatMul/Gemm": (QuantType.QInt8, QuantType.QUInt4, MATMUL_ONLY),
                                       "W4A4 MatMul/Gemm": (QuantType.QInt4, QuantType.QUInt4, MATMUL_ONLY)}


def teachers(names: list[str], args) -> dict[str, tuple[nn.Module, dict[str, tuple[nn.Module, dict[str, Any]]], dict]]:
    """name → (model to quantize, {fastdfkd row label: (model to synthesise from, source options)}, ORT configs)."""
    chosen = {}
    for name in names:
        if name == "vit":
            vit = load_teacher("vit", args.data_dir, epochs=args.vit_epochs)
            chosen[name] = (vit, {"fastdfkd (auto: transformer prior)": (vit, {}),
                                  "fastdfkd, generic prior (ablation)": (vit, {"prior": "generic"})}, VIT_CONFIGS)
        elif name in FOLDED:
            resnet, folded = load_teacher(FOLDED[name], args.data_dir), load_teacher(name, args.data_dir)
            unfolded = FOLDED[name].replace("resnet", "ResNet-")
            chosen[name] = (folded, {"fastdfkd (auto: generic prior)": (folded, {}),
                                     f"fastdfkd on the unfolded {unfolded} (batchnorm prior)": (resnet, {})}, CONFIGS)
        else:
            raise SystemExit(f"unknown teacher {name!r}; choose vit or one of {', '.join(FOLDED)}")
    return chosen


def calibration_sets(fastdfkd_rows: dict[str, tuple[nn.Module, dict[str, Any]]], real: np.ndarray, seed: int,
                     prior_weights: list[float], preview: Path | None) -> dict[str, tuple[torch.Tensor, float]]:
    """label → (normalised inputs, seconds to make them from cold)."""
    sets = {"real train_10k": (torch.from_numpy(real), 0.0)}
    noise = cold_source("gaussian", fastdfkd_rows[next(iter(fastdfkd_rows))][0], clip=False, seed=seed, device="cpu")
    sets["gaussian"] = (noise.synthetic_set(SAMPLES).inputs, 0.0)
    for index, (label, (model, options)) in enumerate(fastdfkd_rows.items()):
        for weight in prior_weights if index == 0 else [1.0]:  # the automatic prior's row is the one to tune
            row = label if len(prior_weights) == 1 or index else f"{label}, prior weight ×{weight:g}"
            teacher = Teacher(model, INPUT_SHAPE, mean=MEAN, std=STD, device="cpu")
            default = make_prior(options.get("prior", "auto"), teacher, momentum=0).weight
            source = cold_source("fastdfkd", teacher, seed=seed, loss_weights=LossWeights(prior=default * weight), **options)
            synthetic, seconds = timed_set(source, SAMPLES)
            sets[row] = (synthetic.inputs, seconds)
            print(f"  {row}: {seconds:.0f} s ({SAMPLES / seconds:.1f} images/s from cold)", flush=True)
            if preview is not None and index == 0:
                write_png(preview, image_grid(teacher.space.denormalize(synthetic.inputs[:64]), columns=8), scale=2)
    return sets


def benchmark_teacher(name: str, model: nn.Module, fastdfkd_rows: dict, configs: dict[str, QuantConfig], args, workdir: Path,
                      results: dict) -> dict:
    """Append the teacher's result to ``results`` and rewrite the files after every seed (a long run leaves what it measured)."""
    result: dict[str, Any] = {"teacher": name, "columns": columns(configs) + [PT2E], "rows": []}
    results["teachers"].append(result)
    for seed in args.seeds:
        real, eval_x, eval_y = evaluation_split(args.eval, SAMPLES, args.data_dir, seed)
        fp32, pre = prepared_onnx(model, workdir, name)
        result["fp32"] = onnx_accuracy(fp32, eval_x, eval_y)
        eval_t, eval_labels = torch.from_numpy(eval_x), torch.from_numpy(eval_y)
        preview = args.out.parent / f"bn_free_{name}.png" if seed == args.seeds[0] and args.eval == "test_a" else None
        for label, (inputs, seconds) in calibration_sets(fastdfkd_rows, real, seed, args.prior_weights, preview).items():
            row = {"source": label, "seed": seed, "synthesis_seconds": seconds,
                   "accuracy": accuracy_per_column(pre, inputs.numpy(), eval_x, eval_y, workdir, configs)}
            quantized = quantize_pt2e_datafree(model, calibration_data(inputs, batch_size=64), default_quantizer())
            row["accuracy"][PT2E] = accuracy(quantized, eval_t, eval_labels)
            result["rows"].append(row)
            print(f"  seed {seed} {label}: " + ", ".join(f"{k} {v:.1f}" for k, v in row["accuracy"].items()), flush=True)
        write_results(args.out, results, markdown(results, args) + "\n")
    print(f"{name}: FP32 {result['fp32']:.2f}", flush=True)
    return result


def summary(result: dict) -> list[dict]:
    """One row per source: mean and standard deviation over seeds of every column and of the synthesis time."""
    rows = []
    for source in dict.fromkeys(r["source"] for r in result["rows"]):
        runs = [r for r in result["rows"] if r["source"] == source]
        spread = lambda values: (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)  # noqa: E731
        rows.append({"source": source, "seconds": spread([r["synthesis_seconds"] for r in runs]),
                     **{c: spread([r["accuracy"][c] for r in runs]) for c in result["columns"]}})
    return rows


def markdown(results: dict, args) -> str:
    lines = heading("Teachers without BatchNorm: data-free calibration", results,
                    "{samples} images per set; mean ± std over the seeds each heading names; accuracy (%) on {eval}; ONNX Runtime "
                    "QDQ with per-channel weights, torchao PT2E X86InductorQuantizer; torch {torch}, {threads} CPU threads. "
                    "Synthesis time is from cold (warm-up included).", samples=SAMPLES, eval=args.eval)
    for result in results["teachers"]:
        names = result["columns"]
        seeds = ", ".join(str(seed) for seed in sorted({row["seed"] for row in result["rows"]}))
        lines += [f"## {result['teacher']} (FP32 {result['fp32']:.2f} %; seeds {seeds})", "",
                  "| calibration data | synthesis s | " + " | ".join(names) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
        for row in summary(result):
            cells = " | ".join(f"{row[c][0]:.2f} ± {row[c][1]:.1f}" for c in names)
            lines.append(f"| {row['source']} | {row['seconds'][0]:.0f} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="vit,resnet20-folded")
    parser.add_argument("--seeds", default="0,1,2", type=int_list)
    parser.add_argument("--eval", choices=["test_a", "heldout"], default="test_a")
    parser.add_argument("--prior-weights", default="1", type=float_list,
                        help="multiples of the automatic prior's default weight, one row each (tune on --eval heldout only)")
    parser.add_argument("--vit-epochs", type=int, default=10, help="which cached training run of the ViT")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/bn_free"))
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    results: dict[str, Any] = {"environment": environment(), "teachers": []}
    with tempfile.TemporaryDirectory() as workdir:
        for name, (model, rows, configs) in teachers(args.teachers.split(","), args).items():
            benchmark_teacher(name, model, rows, configs, args, Path(workdir), results)
    print(markdown(results, args))


if __name__ == "__main__":
    main()
