"""torchao PT2E static quantization calibrated by each data source, on the real CIFAR-10 ResNets.

    python -m benchmarks.torchao_calibration [--teachers resnet20,resnet56] [--samples 512]

For each teacher: FP32 accuracy, then PT2E with ``X86InductorQuantizer`` (uint8
activations observed by its HistogramObserver) in three configurations: its default
per-channel int8 weights, per-tensor int8 weights, and its ``reduce_range`` 7-bit
activations. The quantizer offers nothing below that. Each is calibrated by 512 real
``train_10k`` images, Gaussian noise N(0, 1) (unclipped, as scripts feed it), uniform
pixels and ``fastdfkd`` with its default settings (batch 64, warm-up included in its
time). The last column is the FP32 model after re-estimating its BatchNorm statistics
on the same set (``fastdfkd_plugin.reestimate_batchnorm``). Accuracy on ``test_a.npz``; every
setting was fixed before the first run, none was tuned on it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from fastdfkd_plugin import reestimate_batchnorm
from fastdfkd_plugin.adapters.generic import calibration_data
from fastdfkd_plugin.adapters.torchao import default_quantizer, quantize_pt2e_datafree

from .common.cli import benchmark_parser
from .common.data import accuracy, load_images
from .common.report import environment, heading, publish, scored_rows, source_tables
from .common.sources import cold_source, timed_set
from .common.teachers import load_teacher

CONFIGS = {"W8A8 per-channel": {}, "W8A8 per-tensor": {"per_channel": False}, "W8A7 per-channel": {"reduce_range": True}}
BN_COLUMN = "FP32 after BN re-estimation"


def calibration_sets(teacher: nn.Module, args) -> dict[str, tuple[torch.Tensor, float]]:
    """name → (normalised inputs on the CPU, synthesis seconds)."""
    sets = {"real train_10k": (load_images("train_10k", args.data_dir, limit=args.samples, seed=args.seed)[0], 0.0)}
    for label, name, options in (("gaussian", "gaussian", {"clip": False}), ("uniform", "uniform", {}), ("fastdfkd", "fastdfkd", {})):
        source = cold_source(name, teacher, seed=args.seed, device=args.device, **options)
        synthetic, seconds = timed_set(source, args.samples, args.batch_size)
        sets[label] = (synthetic.inputs.cpu(), seconds)
        print(f"  {label}: {seconds:.0f} s", flush=True)
    return sets


def benchmark_teacher(name: str, args, eval_x: torch.Tensor, eval_y: torch.Tensor) -> dict:
    teacher = load_teacher(name, args.data_dir)
    result = {"teacher": name, "fp32": accuracy(teacher, eval_x, eval_y)}
    print(f"{name}: FP32 {result['fp32']:.2f}", flush=True)

    def score(inputs: torch.Tensor) -> dict[str, float]:
        """Each PT2E configuration calibrated on ``inputs``, then the FP32 model after BN re-estimation on them."""
        calibration = calibration_data(inputs, batch_size=args.batch_size)
        scores = {config: accuracy(quantize_pt2e_datafree(teacher, calibration, default_quantizer(**options)), eval_x, eval_y)
                  for config, options in CONFIGS.items()}
        scores[BN_COLUMN] = accuracy(reestimate_batchnorm(copy.deepcopy(teacher), calibration), eval_x, eval_y)
        return scores

    return {**result, "rows": scored_rows(calibration_sets(teacher, args), score)}


def markdown(results: dict) -> str:
    lines = heading("torchao PT2E static quantization, calibrated without data", results,
                    "torchao {torchao} `X86InductorQuantizer`, {samples} calibration images in batches of {batch_size}, accuracy (%) "
                    "on test_a ({eval_images} images); torch {torch}, {threads} CPU thread(s). W8A7 is the quantizer's "
                    "`reduce_range` (7-bit activations); it offers no lower bit-width.")
    return "\n".join(lines + source_tables(results["teachers"], [*CONFIGS, BN_COLUMN])) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20,resnet56")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/torchao_calibration"))
    args = parser.parse_args(argv)
    import torchao  # only for its version; the adapter imports it where it quantizes

    eval_x, eval_y = load_images("test_a", args.data_dir)
    results = {"environment": environment(), "torchao": torchao.__version__, "samples": args.samples,
               "batch_size": args.batch_size, "eval": "test_a", "eval_images": len(eval_y), "teachers": []}
    for name in args.teachers.split(","):
        results["teachers"].append(benchmark_teacher(name, args, eval_x, eval_y))
    publish(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
