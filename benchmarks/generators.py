"""Generator architectures side by side on the real CIFAR-10 ResNets: cost from cold, and calibration quality.

    python -m benchmarks.generators [--teachers resnet20,resnet56] [--variants paper@20x64,compact@40x16]
                                    [--seeds 0,1,2] [--eval heldout|test_a]

A variant is ``GENERATOR@TASKSxBATCH[/K]``: the generator architecture and the warm-up
(meta-learning tasks × images per task, and K inner steps per warm-up task if not k).
``compact:SHARE`` screens the ``compact`` generator sized to another share of the
teacher's cost (``compact`` is ``compact:0.25``). For each teacher, variant and synthesis
seed: a 512-image ``fastdfkd`` set at k = 5 from cold (warm-up included, no cache),
its population BN distance and the
teacher's confidence, and ONNX Runtime W4A4 (QDQ, per-channel weights) accuracy
with MinMax and Percentile calibration. ``--eval heldout`` scores on 2,000
``train_10k`` images outside the real calibration subset (use it for any choice of
setting); ``test_a`` is for the reported figures. Real images and Gaussian noise are
scored the same way as references.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch

from fastdfkd_plugin import Teacher, set_quality

from .common.cli import benchmark_parser, int_list
from .common.data import INPUT_SHAPE, MEAN, STD, evaluation_split
from .common.ort import prepared_onnx, w4a4_accuracy
from .common.report import environment, heading, publish
from .common.screening import register_screened_generators
from .common.sources import cold_source, timed_set
from .common.teachers import load_teacher

METRICS = ("seconds", "warmup_seconds", "bn_distance", "confidence", "MinMax", "Percentile")


def split_variant(variant: str) -> tuple[str, int, int, int | None]:
    """``GENERATOR@TASKSxBATCH[/K]`` → (generator, warm-up tasks, warm-up batch size, warm-up steps per task or None for k)."""
    generator, warmup = variant.split("@")
    warmup, _, steps = warmup.partition("/")
    tasks, batch = (int(v) for v in warmup.split("x"))
    return generator, tasks, batch, int(steps) if steps else None


def benchmark_teacher(name: str, args, workdir: Path) -> dict:
    model = load_teacher(name, args.data_dir)
    teacher = Teacher(model, INPUT_SHAPE, mean=MEAN, std=STD, device=args.device)
    _, pre = prepared_onnx(model, workdir, name)
    real_x, eval_x, eval_y = evaluation_split(args.eval, args.samples, args.data_dir, seed=0)
    noise = torch.randn(args.samples, *INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    references = {}
    for label, inputs in (("real train_10k", torch.from_numpy(real_x)), ("gaussian", noise)):
        references[label] = {**set_quality(teacher, inputs).as_dict(), **w4a4_accuracy(pre, inputs.numpy(), eval_x, eval_y, workdir)}
    runs = []
    for variant in args.variants.split(","):
        generator, tasks, batch, warmup_steps = split_variant(variant)
        for seed in args.seeds:
            source = cold_source("fastdfkd", teacher, generator=generator, seed=seed, steps=args.steps,
                                 warmup_tasks=tasks, warmup_batch_size=batch, warmup_steps=warmup_steps)
            synthetic, seconds = timed_set(source, args.samples)
            run = {"variant": variant, "seed": seed, "channels": source.synthesizer.generator.channels,
                   "seconds": seconds, "warmup_seconds": source.warmup_seconds,
                   **set_quality(teacher, synthetic.inputs, synthetic.targets).as_dict(),
                   **w4a4_accuracy(pre, synthetic.inputs.cpu().numpy(), eval_x, eval_y, workdir)}
            runs.append(run)
            print(f"{name} {variant} seed {seed}: " + ", ".join(f"{m} {run[m]:.2f}" for m in METRICS), flush=True)
    summary = {}
    for variant in args.variants.split(","):
        mine = [r for r in runs if r["variant"] == variant]
        summary[variant] = {m: (statistics.mean(r[m] for r in mine), statistics.pstdev(r[m] for r in mine)) for m in METRICS}
    return {"teacher": name, "references": references, "runs": runs, "summary": summary}


def markdown(results: dict) -> str:
    lines = heading("Generator architectures: cost from cold and calibration quality", results,
                    "fastdfkd k = {steps}, {samples} images, batch 64, no cache; ONNX Runtime W4A4 QDQ per-channel, accuracy (%) "
                    "on {eval}; mean ± std over seeds {seeds}; torch {torch}, {threads} CPU threads.")
    for result in results["teachers"]:
        lines += [f"## {result['teacher']}", "",
                  "| data | 512 from cold s | of which warm-up s | BN distance | confidence | W4A4 MinMax | W4A4 Percentile |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for label, ref in result["references"].items():
            lines.append(f"| {label} | – | – | {ref['bn_distance']:.1f} | {ref['confidence']:.2f} | {ref['MinMax']:.2f} | "
                         f"{ref['Percentile']:.2f} |")
        for variant, stats in result["summary"].items():
            cells = [f"{stats[m][0]:.{2 if m in ('confidence',) else 1}f} ± {stats[m][1]:.{2 if m == 'confidence' else 1}f}"
                     for m in METRICS]
            channels = next(r["channels"] for r in result["runs"] if r["variant"] == variant)
            generator, tasks, batch, warmup_steps = split_variant(variant)
            per_task = f" at k = {warmup_steps}" if warmup_steps else ""
            lines.append(f"| fastdfkd, `{generator}` generator {channels}, warm-up {tasks} × {batch}{per_task} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20,resnet56")
    parser.add_argument("--variants", default="paper@20x64,compact@40x16",
                        help="GENERATOR@TASKSxBATCH[/K] (K: steps per warm-up task, default --steps), comma-separated")
    parser.add_argument("--seeds", default="0,1,2", type=int_list)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--eval", choices=["test_a", "heldout"], default="heldout")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/generators"))
    args = parser.parse_args(argv)
    register_screened_generators(split_variant(v)[0] for v in args.variants.split(","))
    results = {"environment": environment(), "steps": args.steps,
               "samples": args.samples, "eval": args.eval, "seeds": args.seeds, "teachers": []}
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.teachers.split(","):
            results["teachers"].append(benchmark_teacher(name, args, Path(workdir)))
    publish(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
