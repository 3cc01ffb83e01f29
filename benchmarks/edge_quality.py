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
import time
from pathlib import Path

import torch

from fastdfkd_plugin import Teacher, get_source
from fastdfkd_plugin.adapters.torch_pruning import prune_datafree
from fastdfkd_plugin.batchnorm import reestimate_batchnorm
from fastdfkd_plugin.quality import set_quality

from .cifar import MEAN, STD, accuracy, benchmark_parser
from .edge_teacher import INPUT_SHAPE, NAME, load_edge_teacher, upsample
from .onnx_calibration import CONFIGS, METHODS, evaluation_split, prepared_onnx, quantized_accuracy
from .report import environment, source_tables, write_results

SAMPLES = 512


def calibration_sets(teacher: Teacher, real_x: torch.Tensor, args) -> dict[str, tuple[torch.Tensor, float]]:
    """name → (normalised 64-px inputs, seconds to make them); ``real_x``: the real 32-px calibration images."""
    sets = {"real train_10k": (upsample(real_x), 0.0)}
    makers = {"gaussian": ("gaussian", dict(clip=False))}
    for generator in args.generators.split(","):
        makers[f"fastdfkd k=5, {generator} generator"] = ("fastdfkd", dict(generator=generator, cache=False))
    for label, (name, options) in makers.items():
        source = get_source(name, teacher, seed=args.seed, **options)
        started = time.perf_counter()
        sets[label] = (source.synthetic_set(SAMPLES).inputs, time.perf_counter() - started)
        print(f"  {label}: {sets[label][1]:.0f} s", flush=True)
    return sets


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=10, help="which cached training run of the teacher")
    parser.add_argument("--speed-up", type=float, default=2.0)
    parser.add_argument("--generators", default="compact,compact-subpixel,paper", help="fastdfkd generators, one set each")
    parser.add_argument("--eval", choices=["test_a", "heldout"], default="test_a")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/edge_quality"))
    args = parser.parse_args()
    model = load_edge_teacher(args.epochs, args.data_dir)
    teacher = Teacher(model, INPUT_SHAPE, mean=MEAN, std=STD, device="cpu")
    real_x, eval_x, eval_y = evaluation_split(args.eval, SAMPLES, args.data_dir, args.seed)
    eval_x, eval_y = upsample(torch.from_numpy(eval_x)), torch.from_numpy(eval_y)
    fp32_accuracy = accuracy(model, eval_x, eval_y)
    pruned, report = prune_datafree(teacher, get_source("gaussian", teacher), args.speed_up, "magnitude", bn_samples=0)
    pruned_accuracy = accuracy(pruned, eval_x, eval_y)
    print(f"{NAME}: FP32 {fp32_accuracy:.2f} %, pruned {report.speed_up:.2f}× {pruned_accuracy:.2f} %", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        _, pre = prepared_onnx(model, Path(workdir), NAME, INPUT_SHAPE)
        for label, (inputs, seconds) in calibration_sets(teacher, torch.from_numpy(real_x), args).items():
            row = {"source": label, "synthesis_seconds": seconds, **set_quality(teacher, inputs).as_dict(), "accuracy": {}}
            for config, (wtype, atype) in CONFIGS.items():
                for method_name, method in METHODS.items():
                    row["accuracy"][f"{config} {method_name}"] = quantized_accuracy(
                        pre, inputs.numpy(), wtype, atype, method, eval_x.numpy(), eval_y.numpy(), Path(workdir))
            row["accuracy"]["pruned + BN re-estimation"] = accuracy(reestimate_batchnorm(copy.deepcopy(pruned), [inputs]),
                                                                    eval_x, eval_y)
            rows.append(row)
            print(f"  {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in row["accuracy"].items()), flush=True)
    result = {"teacher": f"{NAME}; pruned to {report.speed_up:.2f}× fewer MACs: {pruned_accuracy:.2f} % before BN re-estimation",
              "fp32": fp32_accuracy, "rows": rows}
    results = {"environment": environment(), "teachers": [result]}
    env = results["environment"]
    columns = [f"{c} {m}" for c in CONFIGS for m in METHODS] + ["pruned + BN re-estimation"]
    lines = ["# A real 64-px MobileNet: calibration and BN re-estimation without data", "",
             f"Command: `{env['command']}`  ",
             f"{SAMPLES} images per source; ONNX Runtime QDQ, per-channel weights; accuracy (%) on {args.eval} upsampled to "
             f"64 px ({len(eval_y)} images); torch {env['torch']}, {env['threads']} CPU threads.", ""]
    lines += ["| source | BN distance | confidence |", "| --- | --- | --- |"]
    lines += [f"| {r['source']} | {r['bn_distance']:.1f} | {r['confidence']:.2f} |" for r in rows]
    lines += [""] + source_tables(results["teachers"], columns)
    write_results(args.out.with_suffix(".json"), args.out.with_suffix(".md"), results, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
