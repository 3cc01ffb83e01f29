"""Data-free distillation of a random-init ResNet-20 from a real CIFAR-10 teacher, per data source.

    python -m benchmarks.distillation [--teacher resnet56|vit] [--budget 600] [--sources fastdfkd-k5,fastdfkd-k2,deepinversion,gaussian,real]

Teachers: the shared ResNet-56 (BatchNorm prior) or the trained ViT of
:mod:`benchmarks.vit_teacher` (no BatchNorm; ``auto`` picks the transformer prior,
``fastdfkd-k5-generic`` is the generic-prior ablation).

Every source gets the same wall-clock budget (synthesis included; fastdfkd's warm-up
too) and the same KD recipe (the paper's: SGD lr 0.2, momentum 0.9, weight decay 1e-4,
τ = 20, cosine schedule, here over the time budget), with a new batch of 64 images every
10 KD steps of batch 128 (the paper's one task per 400 steps would give a CPU budget only
a few batches). ``deepinversion`` makes each batch in 200 steps (a tenth of its usual
2,000), ``gaussian`` is N(0, 1) noise clipped to the image range, ``real`` is
``train_10k`` (the with-data reference). Accuracy on ``test_a.npz`` every budget/8 s of
training time; the final point is reported, never the best.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from examples.cifar_resnet import resnet20
from fastdfkd_plugin import DistillConfig, Distiller, Teacher

from .common.cli import benchmark_parser
from .common.data import accuracy, endless, load_images
from .common.plots import Panel, accuracy_over_time
from .common.report import environment, publish
from .common.sources import cold_source
from .common.teachers import build_teacher

RECIPE = dict(batch_size=128, synthesis_batch_size=64, steps_per_batch=10, bank_size=50_000, lr=0.2, temperature=20.0)
SOURCES = {
    "fastdfkd-k5": ("fastdfkd", {"steps": 5}),
    "fastdfkd-k2": ("fastdfkd", {"steps": 2}),
    "fastdfkd-k5-generic": ("fastdfkd", {"steps": 5, "prior": "generic"}),
    "deepinversion": ("deepinversion", {"steps": 200}),
    "gaussian": ("gaussian", {}),
    "real": (None, {}),
}
DEFAULT_SOURCES = {"resnet56": "fastdfkd-k5,fastdfkd-k2,deepinversion,gaussian,real",
                   "vit": "fastdfkd-k5,fastdfkd-k5-generic,gaussian,real"}
TEACHER_NAMES = {"resnet56": "ResNet-56", "vit": "ViT (1 M parameters)"}


def run_source(label: str, teacher: Teacher, args, eval_x, eval_y, real_x) -> dict:
    name, options = SOURCES[label]
    batches = endless(real_x, RECIPE["synthesis_batch_size"], args.seed) if name is None else cold_source(
        name, teacher, seed=args.seed, **options
    )
    torch.manual_seed(args.seed)
    student = resnet20()  # random init, the same for every source
    config = DistillConfig(steps=10**9, seconds=args.budget, seed=args.seed, **RECIPE)
    distiller = Distiller(teacher, student, batches, config)
    started = time.perf_counter()
    log = distiller.run(evaluate=lambda model: {"accuracy": accuracy(model, eval_x, eval_y)}, eval_every_seconds=args.budget / 8)
    images = (distiller.step + RECIPE["steps_per_batch"] - 1) // RECIPE["steps_per_batch"] * RECIPE["synthesis_batch_size"]
    result = {
        "source": label, "kd_steps": distiller.step, "images": images,
        "synthesis_seconds": round(log.synthesis_seconds, 1), "kd_seconds": round(log.kd_seconds, 1),
        "images_per_second": round(images / log.synthesis_seconds, 2) if name not in (None, "gaussian") else None,
        "kd_steps_per_second": round(distiller.step / log.kd_seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 1), "curve": log.evaluations,
        "final_accuracy": log.evaluations[-1]["accuracy"],
    }
    print(f"  {label}: {result['final_accuracy']:.2f} % after {distiller.step} KD steps, {images} images "
          f"(synthesis {log.synthesis_seconds:.0f} s, KD {log.kd_seconds:.0f} s)", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per source")
    parser.add_argument("--teacher", choices=sorted(TEACHER_NAMES), default="resnet56")
    parser.add_argument("--sources", help=f"comma-separated, from {', '.join(SOURCES)} (default per teacher: {DEFAULT_SOURCES})")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    teacher = build_teacher(args.teacher, "cpu", args.data_dir)
    eval_x, eval_y = load_images("test_a", args.data_dir)
    real_x, _ = load_images("train_10k", args.data_dir, seed=args.seed)
    results = {"teacher": args.teacher, "student": "resnet20 (random init)", "teacher_accuracy": accuracy(teacher.model, eval_x, eval_y),
               "budget_seconds": args.budget, "recipe": RECIPE, "sources": {k: SOURCES[k][1] for k in SOURCES},
               "environment": environment(), "runs": []}
    print(f"teacher {args.teacher}: {results['teacher_accuracy']:.2f} % on test_a", flush=True)
    for label in (args.sources or DEFAULT_SOURCES[args.teacher]).split(","):
        results["runs"].append(run_source(label, teacher, args, eval_x, eval_y, real_x))
    stem = "distillation" if args.teacher == "resnet56" else f"distillation_{args.teacher}"
    publish(args.out / stem, results, markdown(results))
    plot(results, args.out / f"{stem}.png")


def markdown(results: dict) -> str:
    lines = [
        f"# Data-free distillation: {TEACHER_NAMES[results['teacher']]} → ResNet-20 (random init), equal wall-clock per source",
        "",
        f"Command: `OMP_NUM_THREADS=1 {results['environment']['command']}`, pinned to one CPU core with `taskset`.",
        f"Teacher {results['teacher_accuracy']:.2f} % on test_a (5,000 images). Budget {results['budget_seconds']:.0f} s "
        "of training time per source (synthesis, warm-up included, plus KD; evaluation not counted).",
        "",
        "| source | final accuracy | of teacher | KD steps | images | synthesis s | images/s | KD steps/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in results["runs"]:
        rate = f"{run['images_per_second']:.1f}" if run["images_per_second"] else "–"
        lines.append(f"| {run['source']} | {run['final_accuracy']:.2f} | {100 * run['final_accuracy'] / results['teacher_accuracy']:.1f} % "
                     f"| {run['kd_steps']} | {run['images']} | {run['synthesis_seconds']:.0f} | {rate} | {run['kd_steps_per_second']:.2f} |")
    budget = results["budget_seconds"]
    fractions = [i / 8 for i in range(8)]
    lines += ["", "Accuracy along the way (test_a, %), at fractions of the budget (the last evaluation at or before each), "
              "and the final one:", "",
              "| source | " + " | ".join(f"{f:.3g}" for f in fractions) + " | final |", "| --- |" + " --- |" * (len(fractions) + 1)]
    for run in results["runs"]:
        # the first evaluation comes after a cold source's first batch, so early fractions may have none
        cells = [next((f"{e['accuracy']:.1f}" for e in reversed(run["curve"]) if e["seconds"] <= f * budget + 1e-6), "–")
                 for f in fractions]
        lines.append(f"| {run['source']} | " + " | ".join(cells) + f" | {run['final_accuracy']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    teacher = TEACHER_NAMES[results["teacher"]]
    panel = Panel(f"{teacher} → ResNet-20, equal wall-clock per source", results["runs"], results["teacher_accuracy"],
                  f"teacher ({teacher})")
    accuracy_over_time([panel], path, xlabel="training time (min, one CPU core)", ylabel="student accuracy on test_a (%)",
                       panel_size=(7, 4.5))


if __name__ == "__main__":
    main()
