"""Does `quantize-onnx --search` keep the configuration real data would pick? (issue 42's goal: within 1 point of the best).

    python -m benchmarks.search [--teachers resnet20] [--widths W8A8,W4A8,W4A4] [--seeds 0,1,2] [--samples 512]

For each activation/weight width and seed, `quantize_datafree` quantizes the teacher once per
candidate the search tries (MinMax and Percentile calibration × per-channel and per-tensor
weights, each on the same seeded synthetic set), and once with ``search=True``, which keeps the
candidate it estimates best on a held-out synthetic selection set. Every candidate's real top-1
accuracy on ``test_a`` is measured; reported: the real accuracy of the searched model against the
best and the worst candidate, and how often the search lands within 1 point of the best.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fastdfkd_plugin import resolve_device
from fastdfkd_plugin.adapters.onnx_export import onnx_accuracy
from fastdfkd_plugin.adapters.onnxruntime import describe_options, quantize_datafree, searched_options

from .common.cli import benchmark_parser, choice_list, int_list
from .common.data import load_images
from .common.report import environment, heading, mean_spread, publish
from .common.teachers import PRETRAINED, build_teacher

WIDTHS = {"W8A8": ("int8", "uint8"), "W4A8": ("int4", "uint8"), "W4A4": ("int4", "uint4")}
WITHIN = 1.0  # points: the goal


def run(teacher: Any, width: str, seed: int, samples: int, eval_x: np.ndarray, eval_y: np.ndarray, workdir: Path) -> dict[str, Any]:
    weight_type, activation_type = WIDTHS[width]
    common = dict(num_samples=samples, seed=seed, weight_type=weight_type, activation_type=activation_type)
    candidates = {}
    for options in searched_options({"calibrate_method": "minmax", "per_channel": True}):
        path = workdir / f"{width}-{seed}-{len(candidates)}.onnx"
        quantize_datafree(teacher, path, evaluate=False, calibrate_method=options["calibrate_method"],
                          per_channel=options["per_channel"], **common)
        candidates[describe_options(options)] = onnx_accuracy(path, eval_x, eval_y)
    searched = quantize_datafree(teacher, workdir / f"{width}-{seed}-searched.onnx", evaluate=False, search=True, **common)
    chosen = max(searched.searched, key=lambda candidate: candidate[1])[0]
    searched_accuracy = onnx_accuracy(workdir / f"{width}-{seed}-searched.onnx", eval_x, eval_y)
    best = max(candidates.values())
    return {"width": width, "seed": seed, "candidates": candidates, "estimates": dict(searched.searched), "chosen": chosen,
            "searched_accuracy": searched_accuracy, "best": best, "worst": min(candidates.values()),
            "shortfall": round(best - searched_accuracy, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", type=choice_list(PRETRAINED), default=["resnet20"])
    parser.add_argument("--widths", type=choice_list(WIDTHS), default=list(WIDTHS))
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=512, help="calibration images (quantize-onnx's default)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/search"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    eval_x, eval_y = (tensor.numpy() for tensor in load_images("test_a", args.data_dir))
    teachers = []
    with tempfile.TemporaryDirectory(prefix="search-") as workdir:
        for name in args.teachers:
            teacher = build_teacher(name, device, args.data_dir)
            runs = []
            for width in args.widths:
                for seed in args.seeds:
                    runs.append(run(teacher, width, seed, args.samples, eval_x, eval_y, Path(workdir)))
                    last = runs[-1]
                    print(f"{name} {width} seed {seed}: chose {last['chosen']} ({last['searched_accuracy']:.2f} %), "
                          f"best {last['best']:.2f}, worst {last['worst']:.2f}", flush=True)
            teachers.append({"teacher": name, "runs": runs})
    results = {"environment": environment(), "samples": args.samples, "seeds": args.seeds, "teachers": teachers}
    lines = heading("`quantize-onnx --search` against the configuration real accuracy would pick", results,
                    "Real top-1 accuracy (%) on test_a; {samples} synthetic calibration images per run, seeds {seeds}; "
                    "candidates: MinMax / Percentile × per-channel / per-tensor weights on the same set; torch {torch}.")
    for teacher in teachers:
        lines += [f"## {teacher['teacher']}", "",
                  "| width | searched | best candidate | worst candidate | shortfall from best | within 1 point | chosen (per seed) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for width in args.widths:
            runs = [run for run in teacher["runs"] if run["width"] == width]
            within = sum(run["shortfall"] <= WITHIN for run in runs)
            lines.append(f"| {width} | {mean_spread([r['searched_accuracy'] for r in runs])} | {mean_spread([r['best'] for r in runs])} "
                         f"| {mean_spread([r['worst'] for r in runs])} | {mean_spread([r['shortfall'] for r in runs])} "
                         f"| {within} of {len(runs)} | {'; '.join(run['chosen'] for run in runs)} |")
        lines.append("")
    publish(args.out, results, "\n".join(lines))


if __name__ == "__main__":
    main()
