"""Synthesis benchmark on the real CIFAR-10 ResNet teachers: speed and quality per source.

    python -m benchmarks.synthesis [--teachers resnet20,resnet56] [--batch-size 128] [--images 512] [--device cuda] [--bf16]

For each teacher, side by side in one run: ``fastdfkd`` at k = 2, 5, 10,
``deepinversion`` (its 2,000-step cost timed over ``--di-steps`` steps and scaled;
its quality measured at ``--di-steps``), ``gaussian`` noise and 512 real
``train_10k`` images as the reference. Reports images/s (fastdfkd with and without
its warm-up), the population BN-statistics distance, the teacher's confidence and
class histogram, the cost per image relative to one teacher forward+backward (the
floor), and the generator's share of fastdfkd's time (tasks re-timed with the
teacher's loss replaced by a trivial one: generator forward/backward, its two
optimisers and the per-task clone). ``--bf16`` runs the sources under bf16 autocast.
(No ``torch.compile`` variant: a compiled teacher runs eager, see ``fastdfkd_plugin.teacher.teacher.uncompiled``;
``benchmarks.teacher_speed`` times the teacher's own pass compiled.)
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from fastdfkd_plugin import Teacher, resolve_device, set_quality

from .common.cli import benchmark_parser, int_list
from .common.data import load_images
from .common.report import environment, heading, publish
from .common.sources import FASTDFKD_WARMUP_BATCH_SIZE, FASTDFKD_WARMUP_TASKS, cold_source
from .common.teachers import build_teacher
from .common.timing import floor_seconds_per_image, generator_seconds_per_task

DI_FULL_STEPS = 2000


def run_source(name: str, teacher: Teacher, args, **options) -> dict:
    source = cold_source(name, teacher, seed=args.seed, autocast_dtype=torch.bfloat16 if args.bf16 else None, **options)
    warmup = 0.0
    if name == "fastdfkd":
        started = time.perf_counter()
        source.next_batch(args.batch_size)  # pays the warm-up plus one task
        warmup = time.perf_counter() - started
    synthetic = source.synthetic_set(args.images if name != "deepinversion" else args.batch_size, args.batch_size)
    seconds = synthetic.metadata["seconds"]
    quality = set_quality(teacher, synthetic.inputs, synthetic.targets)
    row = {"source": name, **options, "images": len(synthetic), "seconds": seconds,
           "images_per_second": len(synthetic) / seconds, **quality.as_dict()}
    if name == "fastdfkd":
        row["warmup_seconds"] = warmup
        row["images_per_second_with_warmup"] = (len(synthetic) + args.batch_size) / (seconds + warmup)
        tasks = len(synthetic) / args.batch_size
        row["generator_share"] = generator_seconds_per_task(source, args.batch_size) * tasks / seconds
    if name == "deepinversion":
        per_step = seconds / options["steps"]
        row["images_per_second_at_2000_steps"] = args.batch_size / (per_step * DI_FULL_STEPS)
    return row


def benchmark_teacher(teacher_name: str, args) -> dict:
    device = resolve_device(args.device)
    teacher = build_teacher(teacher_name, device, args.data_dir)
    floor = floor_seconds_per_image(teacher, args.batch_size)
    real_x, real_y = load_images("train_10k", args.data_dir, limit=args.images)
    rows = [{"source": "real train_10k", "images": len(real_y), **set_quality(teacher, real_x, real_y).as_dict()}]
    rows.append(run_source("gaussian", teacher, args, clip=False))
    for k in args.ks:
        row = run_source("fastdfkd", teacher, args, steps=k, warmup_tasks=args.warmup_tasks)
        rows.append(row)
        print(f"{teacher_name} fastdfkd k={k}: {row['images_per_second']:.1f} img/s, bn {row['bn_distance']:.2f}", flush=True)
    rows.append(run_source("deepinversion", teacher, args, steps=args.di_steps))
    for row in rows:
        if "images_per_second" in row:
            row["seconds_per_image_over_floor"] = 1 / row["images_per_second"] / floor
    print(f"{teacher_name}: done", flush=True)
    return {"teacher": teacher_name, "floor_seconds_per_image": floor, "rows": rows}


def speedups(result: dict) -> dict:
    rows = result["rows"]
    di = next(r for r in rows if r["source"] == "deepinversion")["images_per_second_at_2000_steps"]
    return {
        f"k={r['steps']}": {"steady": r["images_per_second"] / di, "with_warmup": r["images_per_second_with_warmup"] / di}
        for r in rows if r["source"] == "fastdfkd"
    }


def markdown(results: dict) -> str:
    lines = heading("Synthesis benchmark (CIFAR-10 ResNet teachers)", results,
                    "torch {torch}, {threads} CPU threads, CUDA: {cuda}, batch {batch_size}, {images} images per source, "
                    "fastdfkd warm-up {warmup_tasks} tasks of {warmup_batch_size} images, bf16 autocast: {bf16}.")
    for result in results["teachers"]:
        lines += [f"## {result['teacher']}", "",
                  f"Floor (one teacher forward+backward, float32): {result['floor_seconds_per_image'] * 1e3:.2f} ms per image.", "",
                  "| source | images/s | images/s incl. warm-up | × floor | BN distance | confidence | class histogram | generator share |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in result["rows"]:
            name = r["source"] + {"fastdfkd": f" k={r.get('steps')}", "deepinversion": f" {r.get('steps')} steps"}.get(r["source"], "")
            ips = f"{r['images_per_second']:.1f}" if "images_per_second" in r else "–"
            if r["source"] == "deepinversion":
                ips = f"{r['images_per_second_at_2000_steps']:.3f} at 2,000 steps (timed over {r['steps']})"
            warm = f"{r['images_per_second_with_warmup']:.1f}" if "images_per_second_with_warmup" in r else "–"
            floor = f"{r['seconds_per_image_over_floor']:.1f}" if "seconds_per_image_over_floor" in r else "–"
            share = f"{r['generator_share'] * 100:.0f} %" if "generator_share" in r else "–"
            lines.append(f"| {name} | {ips} | {warm} | {floor} | {r['bn_distance']:.2f} | {r['confidence']:.2f} | "
                         f"{r['class_histogram']} | {share} |")
        lines += ["", "fastdfkd images/s over deepinversion at 2,000 steps per batch: " + ", ".join(
            f"{k}: {v['steady']:.0f}× steady, {v['with_warmup']:.0f}× with warm-up" for k, v in speedups(result).items()), ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20,resnet56")
    parser.add_argument("--ks", default="2,5,10", type=int_list)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--warmup-tasks", type=int, default=FASTDFKD_WARMUP_TASKS,
                        help="fastdfkd warm-up tasks (default: the source's own)")
    parser.add_argument("--di-steps", type=int, default=100)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for teacher and generator (CUDA)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/synthesis"))
    args = parser.parse_args(argv)
    results = {"environment": environment(), "batch_size": args.batch_size, "images": args.images, "bf16": args.bf16,
               "warmup_tasks": args.warmup_tasks, "warmup_batch_size": FASTDFKD_WARMUP_BATCH_SIZE, "teachers": []}
    for name in args.teachers.split(","):
        result = benchmark_teacher(name, args)
        result["speedup_over_deepinversion_2000"] = speedups(result)
        results["teachers"].append(result)
    publish(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
