"""Synthesis benchmark on the real CIFAR-10 ResNet teachers: speed and quality per source.

    python -m benchmarks.synthesis [--teachers resnet20,resnet56] [--batch-size 128] [--images 512]

For each teacher, side by side in one run: ``fastdfkd`` at k = 2, 5, 10,
``deepinversion`` (its 2,000-step cost timed over ``--di-steps`` steps and scaled;
its quality measured at ``--di-steps``), ``gaussian`` noise and 512 real
``train_10k`` images as the reference. Reports images/s (fastdfkd with and without
its warm-up), the population BN-statistics distance, the teacher's confidence and
class histogram, the cost per image relative to one teacher forward+backward (the
floor), and the generator's share of fastdfkd's time (tasks re-timed with the
teacher's loss replaced by a trivial one: generator forward/backward, its two
optimisers and the per-task clone).
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import torch

from fastdfkd_plugin.devices import resolve_device
from fastdfkd_plugin.quality import set_quality
from fastdfkd_plugin.sources.fastdfkd import FastDFKDSource
from fastdfkd_plugin.teacher import frozen

from .cifar import INPUT_SHAPE, benchmark_parser, cold_source, load_images, load_teacher
from .report import environment, write_results

DI_FULL_STEPS = 2000
DEFAULTS = inspect.signature(FastDFKDSource).parameters


def seconds_per_call(fn, device: torch.device, repeats: int = 3, warm: bool = True) -> float:
    if warm:
        fn()  # warm the allocator and kernels
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / repeats


def floor_seconds_per_image(teacher: torch.nn.Module, batch_size: int, device: torch.device,
                            input_shape: tuple[int, int, int] = INPUT_SHAPE) -> float:
    """One teacher forward+backward (gradient to the inputs only), per image."""
    x = torch.randn(batch_size, *input_shape, device=device)

    def step() -> None:
        inputs = x.clone().requires_grad_()
        teacher(inputs).sum().backward()

    with frozen(teacher):
        return seconds_per_call(step, device) / batch_size


class TeacherFreeObjective:
    """Stands in for the inversion loss, so timing a task measures everything but the teacher."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, pixels: torch.Tensor, labels: torch.Tensor, adversarial: bool = True) -> torch.Tensor:
        return pixels.mean()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def generator_seconds_per_task(source, batch_size: int, tasks: int = 2) -> float:
    """Seconds per fastdfkd task spent on the generator: its forward/backward, optimisers and cloning."""
    synthesizer = source.synthesizer
    synthesizer.objective = TeacherFreeObjective(synthesizer.objective)
    labels = source.balanced_labels(batch_size, 0)
    return seconds_per_call(lambda: synthesizer.task(labels), source.device, repeats=tasks)


def run_source(name: str, teacher, args, **options) -> dict:
    source = cold_source(name, teacher, device=args.device, seed=args.seed, **options)
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
    teacher = load_teacher(teacher_name, args.data_dir).to(device)
    floor = floor_seconds_per_image(teacher, args.batch_size, device)
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
    env = results["environment"]
    lines = [
        "# Synthesis benchmark (CIFAR-10 ResNet teachers)", "",
        f"Command: `{env['command']}`  ", f"torch {env['torch']}, {env['threads']} CPU threads, CUDA: {env['cuda']}, "
        f"batch {results['batch_size']}, {results['images']} images per source, fastdfkd warm-up {results['warmup_tasks']} tasks "
        f"of {results['warmup_batch_size']} images.", "",
    ]
    for result in results["teachers"]:
        lines += [f"## {result['teacher']}", "",
                  f"Floor (one teacher forward+backward): {result['floor_seconds_per_image'] * 1e3:.2f} ms per image.", "",
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


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20,resnet56")
    parser.add_argument("--ks", default="2,5,10", type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--warmup-tasks", type=int, default=DEFAULTS["warmup_tasks"].default,
                        help="fastdfkd warm-up tasks (default: the source's own)")
    parser.add_argument("--di-steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/synthesis"))
    args = parser.parse_args()
    results = {"environment": environment(), "batch_size": args.batch_size, "images": args.images,
               "warmup_tasks": args.warmup_tasks, "warmup_batch_size": DEFAULTS["warmup_batch_size"].default, "teachers": []}
    for name in args.teachers.split(","):
        result = benchmark_teacher(name, args)
        result["speedup_over_deepinversion_2000"] = speedups(result)
        results["teachers"].append(result)
    write_results(args.out.with_suffix(".json"), args.out.with_suffix(".md"), results, markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
