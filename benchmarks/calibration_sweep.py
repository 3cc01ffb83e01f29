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
from pathlib import Path

import torch

from fastdfkd_plugin import LossWeights, get_source

from .common.cli import benchmark_parser
from .common.data import INPUT_SHAPE, MEAN, STD, evaluation_split
from .common.ort import prepared_onnx, w4a4_accuracy
from .common.report import environment, heading, publish
from .common.sources import timed_set
from .common.teachers import load_teacher

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


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teacher", default="resnet20")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--only", help="run only the variants whose name contains this text (references always run)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/calibration_sweep"))
    args = parser.parse_args(argv)
    teacher = load_teacher(args.teacher, args.data_dir)
    real_x, eval_x, eval_y = evaluation_split("heldout", args.samples, args.data_dir, args.seed)
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
            # not cold_source: the sweep has always run with the source's defaults, warm-state cache included
            source = get_source("fastdfkd", teacher, INPUT_SHAPE, mean=MEAN, std=STD, seed=seed, device=args.device, **options)
            synthetic, seconds = timed_set(source, samples, batch)
            rows.append({"variant": name, "seconds": seconds,
                         **w4a4_accuracy(pre, synthetic.inputs.cpu().numpy(), eval_x, eval_y, workdir)})
            print(rows[-1], flush=True)
    results = {"environment": environment(), "teacher": args.teacher, "eval_images": len(eval_y), "rows": rows}
    lines = heading("What makes a fastdfkd calibration set work (W4A4, held-out train_10k)", results,
                    "{teacher}, ONNX Runtime W4A4 QDQ per-channel, accuracy (%) on {eval_images} held-out train_10k images "
                    "(not test_a); one setting changed per row.")
    lines += ["| variant | synthesis s | W4A4 MinMax | W4A4 Percentile |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['variant']} | {r['seconds']:.0f} | {r['MinMax']:.2f} | {r['Percentile']:.2f} |" for r in rows]
    publish(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
