"""What a fastdfkd batch costs at 32–224 px, against the teacher-bound floor (speed only).

    python -m benchmarks.resolution [--teachers resnet20,resnet56,mobilenet_v1_025_96,mobilenet_v2_224,resnet18_224,ppocr_rec]
                                    [--ks 2,5,10] [--generators compact,paper] [--steps eager,compiled] [--device cuda]

Teachers: the real CIFAR-10 ResNets, the architectures of :mod:`benchmarks.common.edge_models`
(random weights with BatchNorm statistics: cost does not depend on what the weights
learned), and ONNX files through fastdfkd's converter (``resnet20-onnx``, ``ppocr_det``,
``ppocr_cls``, ``ppocr_rec``: :mod:`benchmarks.common.teachers`). For each teacher, k, generator and way of freeing memory, in a fresh process (so peak memory is
that configuration's own): the floor (one teacher
forward+backward per image), seconds per warm task of ``--batch-size`` images, × floor
(the limit of a k-step synthesizer is k × floor; floor and task are timed in alternation,
``--rounds`` times, and the median of the per-round ratios is reported, so that a
machine whose speed drifts over minutes moves both alike), the generator's share of a task, one
warm-up task (of the default warm-up batch size) timed, and peak memory (resident set on CPU, allocated on CUDA). A 512-image
set costs 512 / batch tasks when warm and ``warmup_tasks`` more from cold; both are
derived from the timed tasks. ``--steps eager,compiled`` times the eager and the
``torch.compile``d inner step side by side in one process (floor, eager task, compiled task
in each round; peak memory is then the pair's), with the seconds the first compiled batch
took (compiling, from the inductor cache when it holds the graphs), and for each the
operators dispatched per image (torch.profiler on one task: aten operators called from
Python or autograd, plus inductor's kernels): the launch count a GPU would pay.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from fastdfkd_plugin import DataSource, keep_freed_memory, resolve_device

from .common.cli import benchmark_parser
from .common.report import environment, heading, publish
from .common.screening import register_screened_generators
from .common.sources import FASTDFKD_WARMUP_BATCH_SIZE, FASTDFKD_WARMUP_TASKS, cold_source
from .common.teachers import PRETRAINED, RANDOM, build_teacher
from .common.timing import floor_seconds_per_image, generator_seconds_per_task, seconds_per_call

SET_SIZE = 512


def operators_per_image(source: DataSource, batch_size: int) -> float:
    """Operators one warm task dispatches, per image: aten operators not called by another aten operator, and compiled kernels."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        source.next_batch(batch_size)
    events = profiler.events()
    dispatched = [e for e in events if e.name.startswith("aten::") and not (e.cpu_parent and e.cpu_parent.name.startswith("aten::"))]
    kernels = [e for e in events if e.name.startswith(("cpp_fused", "triton_"))]
    return (len(dispatched) + len(kernels)) / batch_size


def measure(name: str, k: int, generator: str, batch_size: int, device_name: str, bf16: bool = False, rounds: int = 3,
            memory: str = "kept", steps: tuple[str, ...] = ("eager",)) -> list[dict]:
    """One teacher at one k with one generator, in this process (``bf16``: autocast for teacher and generator), a row per step kind.

    ``memory`` "kept" measures what the ``fastdfkd`` command runs with (freed memory kept
    in the process, :mod:`fastdfkd_plugin.runtime.memory`), "returned" glibc's default.
    ``steps``: "eager" and/or "compiled", timed in alternation with the floor.
    """
    if memory == "kept":
        keep_freed_memory()
    if "compiled" in steps:
        torch._inductor.config.cpp.enable_kernel_profile = True  # the profiler then sees each compiled CPU kernel
    device = resolve_device(device_name)
    register_screened_generators([generator])
    teacher = build_teacher(name, device)
    shape = teacher.input_shape
    sources, first_calls, warmup_tasks = {}, {}, {}
    for kind in steps:
        source = sources[kind] = cold_source("fastdfkd", teacher, steps=k, generator=generator, warmup_tasks=1,
                                             compile=kind == "compiled", warmup_batch_size=FASTDFKD_WARMUP_BATCH_SIZE,
                                             autocast_dtype=torch.bfloat16 if bf16 else None)
        # Three first calls, each compiling a graph when compiled: the first warm-up task, a batch, and a warm-up task
        # with a momentum average to blend in; then a warm-up task timed warm.
        first_calls[kind] = seconds_per_call(source.warm_up, device, repeats=1, warm=False)
        first_calls[kind] += seconds_per_call(lambda: source.next_batch(batch_size), device, repeats=1, warm=False)
        warmup_labels = source.draw_targets(FASTDFKD_WARMUP_BATCH_SIZE, 0)
        with source.objective.attached():
            started = time.perf_counter()
            warmup_tasks[kind] = seconds_per_call(lambda: source.synthesizer.task(warmup_labels, adversarial=False), device,
                                                  repeats=1)
            first_calls[kind] += time.perf_counter() - started - warmup_tasks[kind]
    floors, tasks = [], {kind: [] for kind in steps}
    for _ in range(rounds):
        floors.append(floor_seconds_per_image(teacher, batch_size))
        for kind in steps:
            tasks[kind].append(seconds_per_call(lambda: sources[kind].next_batch(batch_size), device, repeats=1, warm=False))
    operators = {kind: operators_per_image(sources[kind], batch_size) for kind in steps}
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    floor, per_set = statistics.median(floors), math.ceil(SET_SIZE / batch_size)
    rows = []
    for kind in steps:
        task = statistics.median(tasks[kind])
        compile_seconds = first_calls[kind] - 2 * warmup_tasks[kind] - task  # what the first calls took beyond warm ones
        rows.append({
            "teacher": name, "input_shape": list(shape), "k": k, "generator": generator, "bf16": bf16, "freed_memory": memory,
            "step": kind, "generator_channels": sources[kind].synthesizer.generator.channels, "batch_size": batch_size,
            "floor_ms_per_image": 1e3 * floor, "task_seconds": task, "warmup_task_seconds": warmup_tasks[kind],
            "compile_seconds": compile_seconds, "operators_per_image": operators[kind],
            "times_floor": statistics.median(t / batch_size / f for t, f in zip(tasks[kind], floors)),
            "floor_ms_per_image_rounds": [1e3 * f for f in floors], "task_seconds_rounds": tasks[kind],
            "images_per_second_warm": batch_size / task, "set_512_seconds_warm": per_set * task,
            "set_512_seconds_cold": per_set * task + FASTDFKD_WARMUP_TASKS * warmup_tasks[kind] + compile_seconds,
            "peak_memory_gib": peak / 2**30, "peak_memory_kind": "allocated (CUDA)" if device.type == "cuda" else "resident (CPU)"})
    for row in rows:  # last: timing the generator replaces the eager source's objective for good
        row["generator_share"] = (generator_seconds_per_task(sources["eager"], batch_size, tasks=1) / row["task_seconds"]
                                  if row["step"] == "eager" else None)
    return rows


def markdown(results: dict) -> str:
    lines = heading("Synthesis cost against the teacher-bound floor, 32–224 px (fastdfkd)", results,
                    "torch {torch}, {threads} threads, CUDA: {cuda}, bf16 autocast: {bf16}.")
    lines += ["| teacher | input | k | generator | freed memory | step | floor ms/img | task s | images/s warm | × floor (limit k) | "
              "operators/image | compile s | generator share | 512 warm s | 512 cold s | peak memory GiB |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        share = "–" if r["generator_share"] is None else f"{100 * r['generator_share']:.0f} %"
        lines.append(f"| {r['teacher']} | {'×'.join(map(str, r['input_shape'][1:]))} | {r['k']} | "
                     f"`{r['generator']}` {r['generator_channels']} | {r['freed_memory']} | {r['step']} | {r['floor_ms_per_image']:.2f} | "
                     f"{r['task_seconds']:.2f} | {r['images_per_second_warm']:.1f} | {r['times_floor']:.1f} | "
                     f"{r['operators_per_image']:.1f} | {r['compile_seconds']:.0f} | {share} | {r['set_512_seconds_warm']:.0f} | "
                     f"{r['set_512_seconds_cold']:.0f} | {r['peak_memory_gib']:.2f} ({r['peak_memory_kind']}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default=",".join([*PRETRAINED, *RANDOM]))
    parser.add_argument("--ks", default="2,5,10")
    parser.add_argument("--generators", default="compact", help="comma-separated generator names (paper, compact, compact:SHARE)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating floor/task timings per configuration (medians)")
    parser.add_argument("--memory", default="kept", help="comma-separated: kept (as the fastdfkd command runs), returned (glibc's default)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for teacher and generator (CUDA)")
    parser.add_argument("--steps", default="eager", help="comma-separated, timed side by side: eager, compiled (torch.compile)")
    parser.add_argument("--one", nargs=4, metavar=("TEACHER", "K", "GENERATOR", "MEMORY"), help=argparse.SUPPRESS)  # the per-configuration child
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/resolution"))
    args = parser.parse_args(argv)
    if not set(args.memory.split(",")) <= {"kept", "returned"}:
        parser.error(f"--memory takes kept and/or returned, got {args.memory}")
    steps = tuple(args.steps.split(","))
    if not set(steps) <= {"eager", "compiled"}:
        parser.error(f"--steps takes eager and/or compiled, got {args.steps}")
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.one[2], args.batch_size, args.device, args.bf16, args.rounds,
                                 args.one[3], steps)))
        return
    results = {"environment": environment(), "bf16": args.bf16, "rows": []}
    for name in args.teachers.split(","):
        for k, generator, memory in itertools.product((int(v) for v in args.ks.split(",")), args.generators.split(","),
                                                      args.memory.split(",")):
            done = subprocess.run([sys.executable, "-m", "benchmarks.resolution", "--one", name, str(k), generator, memory, "--batch-size",
                                   str(args.batch_size), "--rounds", str(args.rounds), "--device", args.device, "--steps", args.steps,
                                   *(["--bf16"] if args.bf16 else [])],
                                  capture_output=True, text=True, check=True)
            for row in json.loads(done.stdout.strip().splitlines()[-1]):
                results["rows"].append(row)
                print(f"{name} k={k} {generator} memory {memory} {row['step']}: {row['images_per_second_warm']:.1f} images/s warm, "
                      f"{row['times_floor']:.1f}× floor, {row['operators_per_image']:.0f} operators/image, "
                      f"peak {row['peak_memory_gib']:.2f} GiB", flush=True)
    publish(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
