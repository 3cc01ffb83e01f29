"""Why does a calibration set work? One-factor sweep of fastdfkd settings, scored on held-out train_10k.

    python -m benchmarks.calibration_sweep [--teacher resnet20] [--samples 512]

Each row changes one setting from the defaults and reports ONNX Runtime W4A4
(QDQ, per-channel) accuracy with MinMax and Percentile calibration on 2,000
``train_10k`` images that are not in the 512-image real calibration subset, so
nothing here is selected on ``test_a``. Real images and Gaussian noise are scored
the same way as references.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import QuantType

from fastdfkd_plugin import get_source
from fastdfkd_plugin.synthesis.objective import LossWeights

from .cifar import INPUT_SHAPE, MEAN, STD, benchmark_parser, load_images, load_teacher
from .onnx_calibration import HELDOUT, METHODS, prepared_onnx, quantized_accuracy
from .report import environment, write_results

VARIANTS = {
    "defaults (k=5, 20 warm-up tasks, batch 64)": {},
    "k=10": {"steps": 10},
    "40 warm-up tasks": {"warmup_tasks": 40},
    "80 warm-up tasks": {"warmup_tasks": 80},
    "batch 128 (warm-up and set)": {"batch_size": 128},
    "BN momentum 0 (off)": {"bn_momentum": 0.0},
    "w_oh 0.1 (weaker class term)": {"loss_weights": LossWeights(prior=10, oh=0.1, adv=1.0)},
    "w_oh 2.0 (stronger class term)": {"loss_weights": LossWeights(prior=10, oh=2.0, adv=1.0)},
    "1,024 images (set size)": {"num_samples": 1024},
    "defaults, synthesis seed 1": {"seed": 1},
    "defaults, synthesis seed 2": {"seed": 2},
}


def w4a4_accuracy(pre: Path, inputs: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray, workdir: Path) -> dict[str, float]:
    return {name: quantized_accuracy(pre, inputs, QuantType.QInt4, QuantType.QUInt4, method, eval_x, eval_y, workdir)
            for name, method in METHODS.items()}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teacher", default="resnet20")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--only", help="run only the variants whose name contains this text (references always run)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/calibration_sweep"))
    args = parser.parse_args()
    teacher = load_teacher(args.teacher, args.data_dir)
    all_x, all_y = load_images("train_10k", args.data_dir, limit=args.samples + HELDOUT, seed=args.seed)
    real_x, eval_x, eval_y = all_x[: args.samples].numpy(), all_x[args.samples :].numpy(), all_y[args.samples :].numpy()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _, pre = prepared_onnx(teacher, workdir)
        noise = torch.randn(args.samples, *INPUT_SHAPE, generator=torch.Generator().manual_seed(args.seed)).numpy()
        for name, inputs in (("real train_10k (reference)", real_x), ("gaussian (floor)", noise)):
            rows.append({"variant": name, "seconds": 0.0, **w4a4_accuracy(pre, inputs, eval_x, eval_y, workdir)})
            print(rows[-1], flush=True)
        for name, change in VARIANTS.items():
            if args.only and args.only not in name:
                continue
            options = dict(change)
            samples, batch = options.pop("num_samples", args.samples), options.pop("batch_size", 64)
            seed = options.pop("seed", args.seed)
            source = get_source("fastdfkd", teacher, INPUT_SHAPE, mean=MEAN, std=STD, seed=seed, device=args.device, **options)
            started = time.perf_counter()
            inputs = source.synthetic_set(samples, batch).inputs.cpu().numpy()
            rows.append({"variant": name, "seconds": time.perf_counter() - started,
                         **w4a4_accuracy(pre, inputs, eval_x, eval_y, workdir)})
            print(rows[-1], flush=True)
    results = {"environment": environment(), "teacher": args.teacher, "eval_images": len(eval_y), "rows": rows}
    lines = ["# What makes a fastdfkd calibration set work (W4A4, held-out train_10k)", "",
             f"Command: `{results['environment']['command']}`  ",
             f"{args.teacher}, ONNX Runtime W4A4 QDQ per-channel, accuracy (%) on {len(eval_y)} held-out train_10k images "
             "(not test_a); one setting changed per row.", "",
             "| variant | synthesis s | W4A4 MinMax | W4A4 Percentile |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['variant']} | {r['seconds']:.0f} | {r['MinMax']:.2f} | {r['Percentile']:.2f} |" for r in rows]
    write_results(args.out.with_suffix(".json"), args.out.with_suffix(".md"), results, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
