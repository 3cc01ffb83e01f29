"""What a fastdfkd batch costs at 32–224 px, against the teacher-bound floor (speed only).

    python -m benchmarks.resolution [--teachers resnet20,resnet56,mobilenet_v1_025_96,mobilenet_v2_224,resnet18_224]
                                    [--ks 2,5,10] [--generators compact,paper] [--device cuda]

Teachers: the real CIFAR-10 ResNets, and the architectures of :mod:`benchmarks.common.edge_models`
(random weights with BatchNorm statistics: cost does not depend on what the weights
learned). For each teacher, k, generator and way of freeing memory, in a fresh process (so peak memory is
that configuration's own): the floor (one teacher
forward+backward per image), seconds per warm task of ``--batch-size`` images, × floor
(the limit of a k-step synthesizer is k × floor; floor and task are timed in alternation,
``--rounds`` times, and the median of the per-round ratios is reported, so that a
machine whose speed drifts over minutes moves both alike), the generator's share of a task, one
warm-up task (of the default warm-up batch size) timed, and peak memory (resident set on CPU, allocated on CUDA). A 512-image
set costs 512 / batch tasks when warm and ``warmup_tasks`` more from cold; both are
derived from the timed tasks.
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

from fastdfkd_plugin import keep_freed_memory, resolve_device

from .common.cli import benchmark_parser
from .common.report import environment, heading, publish
from .common.screening import register_screened_generators
from .common.sources import FASTDFKD_WARMUP_BATCH_SIZE, FASTDFKD_WARMUP_TASKS, cold_source
from .common.teachers import PRETRAINED, RANDOM, build_teacher
from .common.timing import floor_seconds_per_image, generator_seconds_per_task, seconds_per_call

SET_SIZE = 512


def measure(name: str, k: int, generator: str, batch_size: int, device_name: str, bf16: bool = False, rounds: int = 3,
            memory: str = "kept") -> dict:
    """One teacher at one k with one generator, in this process (``bf16``: autocast for teacher and generator).

    ``memory`` "kept" measures what the ``fastdfkd`` command runs with (freed memory kept
    in the process, :mod:`fastdfkd_plugin.runtime.memory`), "returned" glibc's default.
    """
    if memory == "kept":
        keep_freed_memory()
    device = resolve_device(device_name)
    register_screened_generators([generator])
    teacher = build_teacher(name, device)
    shape = teacher.input_shape
    source = cold_source("fastdfkd", teacher, steps=k, generator=generator, warmup_tasks=1,
                         warmup_batch_size=FASTDFKD_WARMUP_BATCH_SIZE, autocast_dtype=torch.bfloat16 if bf16 else None)
    started = time.perf_counter()
    source.warm_up()
    warmup_task = time.perf_counter() - started
    source.next_batch(batch_size)  # warms the allocator at this batch size
    floors, tasks = [], []
    for _ in range(rounds):
        floors.append(floor_seconds_per_image(teacher, batch_size))
        tasks.append(seconds_per_call(lambda: source.next_batch(batch_size), device, repeats=1, warm=False))
    floor, task = statistics.median(floors), statistics.median(tasks)
    generator_seconds = generator_seconds_per_task(source, batch_size, tasks=1)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    per_set = math.ceil(SET_SIZE / batch_size)
    return {"teacher": name, "input_shape": list(shape), "k": k, "generator": generator, "bf16": bf16, "freed_memory": memory,
            "generator_channels": source.synthesizer.generator.channels, "batch_size": batch_size,
            "floor_ms_per_image": 1e3 * floor, "task_seconds": task, "warmup_task_seconds": warmup_task,
            "times_floor": statistics.median(t / batch_size / f for t, f in zip(tasks, floors)),
            "floor_ms_per_image_rounds": [1e3 * f for f in floors], "task_seconds_rounds": tasks,
            "generator_share": generator_seconds / task, "images_per_second_warm": batch_size / task,
            "set_512_seconds_warm": per_set * task, "set_512_seconds_cold": per_set * task + FASTDFKD_WARMUP_TASKS * warmup_task,
            "peak_memory_gib": peak / 2**30, "peak_memory_kind": "allocated (CUDA)" if device.type == "cuda" else "resident (CPU)"}


def markdown(results: dict) -> str:
    lines = heading("Synthesis cost against the teacher-bound floor, 32–224 px (fastdfkd)", results,
                    "torch {torch}, {threads} threads, CUDA: {cuda}, bf16 autocast: {bf16}.")
    lines += ["| teacher | input | k | generator | freed memory | floor ms/img | task s | images/s warm | × floor (limit k) | generator share | "
              "512 warm s | 512 cold s | peak memory GiB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        lines.append(f"| {r['teacher']} | {'×'.join(map(str, r['input_shape'][1:]))} | {r['k']} | "
                     f"`{r['generator']}` {r['generator_channels']} | {r['freed_memory']} | {r['floor_ms_per_image']:.2f} | "
                     f"{r['task_seconds']:.1f} | {r['images_per_second_warm']:.1f} | {r['times_floor']:.1f} | "
                     f"{100 * r['generator_share']:.0f} % | {r['set_512_seconds_warm']:.0f} | {r['set_512_seconds_cold']:.0f} | "
                     f"{r['peak_memory_gib']:.2f} ({r['peak_memory_kind']}) |")
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
    parser.add_argument("--one", nargs=4, metavar=("TEACHER", "K", "GENERATOR", "MEMORY"), help=argparse.SUPPRESS)  # the per-configuration child
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/resolution"))
    args = parser.parse_args(argv)
    if not set(args.memory.split(",")) <= {"kept", "returned"}:
        parser.error(f"--memory takes kept and/or returned, got {args.memory}")
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.one[2], args.batch_size, args.device, args.bf16, args.rounds,
                                 args.one[3])))
        return
    results = {"environment": environment(), "bf16": args.bf16, "rows": []}
    for name in args.teachers.split(","):
        for k, generator, memory in itertools.product((int(v) for v in args.ks.split(",")), args.generators.split(","),
                                                      args.memory.split(",")):
            done = subprocess.run([sys.executable, "-m", "benchmarks.resolution", "--one", name, str(k), generator, memory, "--batch-size",
                                   str(args.batch_size), "--rounds", str(args.rounds), "--device", args.device,
                                   *(["--bf16"] if args.bf16 else [])],
                                  capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results["rows"].append(row)
            print(f"{name} k={k} {generator} memory {memory}: {row['images_per_second_warm']:.1f} images/s warm, {row['times_floor']:.1f}× floor, "
                  f"generator {100 * row['generator_share']:.0f} %, peak {row['peak_memory_gib']:.2f} GiB", flush=True)
    publish(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
