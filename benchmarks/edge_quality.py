"""Data-free calibration and BN re-estimation on a real teacher above 32 px: MobileNetV1 α 0.5 at 64×64.

    python -m benchmarks.edge_quality [--epochs 10] [--speed-up 2.0] [--generators compact,compact-subpixel,paper]
                                      [--eval test_a|heldout]

The teacher is :mod:`benchmarks.edge_teacher`'s (trained once on CIFAR-10 upsampled to
64 px, then cached). Side by side, 512 images each: real ``train_10k`` images
(upsampled the same way), Gaussian noise N(0, 1) (unclipped, as scripts feed it) and
``fastdfkd`` k = 5 from cold with the ``compact``, ``compact-subpixel`` and ``paper`` generators. For each:
the time to make it, its BN distance and the teacher's confidence, ONNX Runtime
W8A8/W4A8/W4A4 accuracy (QDQ, per-channel weights, MinMax and Percentile) and the
accuracy of a copy pruned to ``--speed-up``× fewer MACs (magnitude importance, no data)
after BatchNorm re-estimation on the set. Accuracy on ``test_a`` upsampled to 64 px
(``--eval heldout``: on 2,000 ``train_10k`` images not used for calibration, for choosing
a default without looking at the test split).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from fastdfkd_plugin import Teacher, reestimate_batchnorm, set_quality
from fastdfkd_plugin.adapters.torch_pruning import prune_datafree

from .common.cli import benchmark_parser
from .common.data import accuracy, evaluation_split, resize
from .common.ort import accuracy_per_column, columns, prepared_onnx
from .common.report import environment, heading, publish, source_tables
from .common.sources import cold_source, timed_set
from .common.teachers import build_teacher

TEACHER = "mobilenet_v1_050_64"
SAMPLES = 512


def calibration_sets(teacher: Teacher, real_x: torch.Tensor, args) -> dict[str, tuple[torch.Tensor, float]]:
    """name → (normalised 64-px inputs, seconds to make them); ``real_x``: the real 32-px calibration images."""
    sets = {"real train_10k": (resize(real_x, teacher.input_shape[-1]), 0.0)}
    makers = {"gaussian": ("gaussian", dict(clip=False))}
    for generator in args.generators.split(","):
        makers[f"fastdfkd k=5, {generator} generator"] = ("fastdfkd", dict(generator=generator))
    for label, (name, options) in makers.items():
        synthetic, seconds = timed_set(cold_source(name, teacher, seed=args.seed, **options), SAMPLES)
        sets[label] = (synthetic.inputs, seconds)
        print(f"  {label}: {seconds:.0f} s", flush=True)
    return sets


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=10, help="which cached training run of the teacher")
    parser.add_argument("--speed-up", type=float, default=2.0)
    parser.add_argument("--generators", default="compact,compact-subpixel,paper", help="fastdfkd generators, one set each")
    parser.add_argument("--eval", choices=["test_a", "heldout"], default="test_a")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/edge_quality"))
    args = parser.parse_args(argv)
    teacher = build_teacher(TEACHER, "cpu", args.data_dir, epochs=args.epochs)
    model, size = teacher.model, teacher.input_shape[-1]
    real_x, eval_x, eval_y = evaluation_split(args.eval, SAMPLES, args.data_dir, args.seed)
    eval_x, eval_y = resize(torch.from_numpy(eval_x), size), torch.from_numpy(eval_y)
    fp32_accuracy = accuracy(model, eval_x, eval_y)
    pruned, report = prune_datafree(teacher, cold_source("gaussian", teacher), args.speed_up, "magnitude", bn_samples=0)
    pruned_accuracy = accuracy(pruned, eval_x, eval_y)
    print(f"{TEACHER}: FP32 {fp32_accuracy:.2f} %, pruned {report.speed_up:.2f}× {pruned_accuracy:.2f} %", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        _, pre = prepared_onnx(model, Path(workdir), TEACHER, teacher.input_shape)
        for label, (inputs, seconds) in calibration_sets(teacher, torch.from_numpy(real_x), args).items():
            row = {"source": label, "synthesis_seconds": seconds, **set_quality(teacher, inputs).as_dict(),
                   "accuracy": accuracy_per_column(pre, inputs.numpy(), eval_x.numpy(), eval_y.numpy(), Path(workdir))}
            row["accuracy"]["pruned + BN re-estimation"] = accuracy(reestimate_batchnorm(copy.deepcopy(pruned), [inputs]),
                                                                    eval_x, eval_y)
            rows.append(row)
            print(f"  {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in row["accuracy"].items()), flush=True)
    result = {"teacher": f"{TEACHER}; pruned to {report.speed_up:.2f}× fewer MACs: {pruned_accuracy:.2f} % before BN re-estimation",
              "fp32": fp32_accuracy, "rows": rows}
    results = {"environment": environment(), "teachers": [result]}
    lines = heading("A real 64-px MobileNet: calibration and BN re-estimation without data", results,
                    "{samples} images per source; ONNX Runtime QDQ, per-channel weights; accuracy (%) on {eval} upsampled to "
                    "64 px ({eval_images} images); torch {torch}, {threads} CPU threads.",
                    samples=SAMPLES, eval=args.eval, eval_images=len(eval_y))
    lines += ["| source | BN distance | confidence |", "| --- | --- | --- |"]
    lines += [f"| {r['source']} | {r['bn_distance']:.1f} | {r['confidence']:.2f} |" for r in rows]
    lines += [""] + source_tables(results["teachers"], columns() + ["pruned + BN re-estimation"])
    publish(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
