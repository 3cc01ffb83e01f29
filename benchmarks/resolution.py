"""What a fastdfkd batch costs at 96–224 px, against the teacher-bound floor (speed only).

    python -m benchmarks.resolution [--teachers mobilenet_v1_025_96,mobilenet_v2_224,resnet18_224] [--ks 5] [--device cuda]

Teachers from :mod:`benchmarks.edge_models` (random weights with BatchNorm statistics:
cost does not depend on what the weights learned). For each teacher and k, in a fresh
process (so peak memory is that configuration's own): the floor (one teacher
forward+backward per image), seconds per warm task of ``--batch-size`` images, × floor
(the limit of a k-step synthesizer is k × floor), the generator's share of a task, one
warm-up task timed, and peak memory (resident set on CPU, allocated on CUDA). A 512-image
set costs 512 / batch tasks when warm and ``warmup_tasks`` more from cold; both are
derived from the timed tasks.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from fastdfkd_plugin import Teacher, get_source
from fastdfkd_plugin.devices import resolve_device

from .cifar import benchmark_parser
from .edge_models import EDGE_TEACHERS, with_batchnorm_statistics
from .report import environment, write_results
from .synthesis import floor_seconds_per_image, generator_seconds_per_task, seconds_per_call

WARMUP_TASKS = 20  # the fastdfkd default, for the cold estimate
SET_SIZE = 512


def measure(name: str, k: int, batch_size: int, device_name: str) -> dict:
    """One teacher at one k, in this process."""
    device = resolve_device(device_name)
    make, shape = EDGE_TEACHERS[name]
    torch.manual_seed(0)
    teacher = Teacher(with_batchnorm_statistics(make(), shape), shape, device=device)
    floor = floor_seconds_per_image(teacher.model, batch_size, device, shape)
    source = get_source("fastdfkd", teacher, steps=k, warmup_tasks=1, warmup_batch_size=batch_size, cache=False)
    started = time.perf_counter()
    source.warm_up()
    warmup_task = time.perf_counter() - started
    task = seconds_per_call(lambda: source.next_batch(batch_size), device, repeats=2)
    generator = generator_seconds_per_task(source, batch_size, tasks=1)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tasks = math.ceil(SET_SIZE / batch_size)
    return {"teacher": name, "input_shape": list(shape), "k": k, "batch_size": batch_size,
            "floor_ms_per_image": 1e3 * floor, "task_seconds": task, "warmup_task_seconds": warmup_task,
            "times_floor": task / batch_size / floor, "generator_share": generator / task,
            "images_per_second_warm": batch_size / task,
            "set_512_seconds_warm": tasks * task, "set_512_seconds_cold": tasks * task + WARMUP_TASKS * warmup_task,
            "peak_memory_gib": peak / 2**30, "peak_memory_kind": "allocated (CUDA)" if device.type == "cuda" else "resident (CPU)"}


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = ["# Synthesis cost at 96–224 px (fastdfkd, today's generator)", "",
             f"Command: `{env['command']}`  ", f"torch {env['torch']}, {env['threads']} threads, CUDA: {env['cuda']}.", "",
             "| teacher | input | k | floor ms/img | task s | images/s warm | × floor (limit k) | generator share | "
             "512 warm s | 512 cold s | peak memory GiB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        lines.append(f"| {r['teacher']} | {'×'.join(map(str, r['input_shape'][1:]))} | {r['k']} | {r['floor_ms_per_image']:.2f} | "
                     f"{r['task_seconds']:.1f} | {r['images_per_second_warm']:.1f} | {r['times_floor']:.1f} | "
                     f"{100 * r['generator_share']:.0f} % | {r['set_512_seconds_warm']:.0f} | {r['set_512_seconds_cold']:.0f} | "
                     f"{r['peak_memory_gib']:.2f} ({r['peak_memory_kind']}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default=",".join(EDGE_TEACHERS))
    parser.add_argument("--ks", default="2,5,10")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--one", nargs=2, metavar=("TEACHER", "K"), help=argparse.SUPPRESS)  # the per-configuration child
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/resolution"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.batch_size, args.device)))
        return
    results = {"environment": environment(), "rows": []}
    for name in args.teachers.split(","):
        for k in (int(v) for v in args.ks.split(",")):
            done = subprocess.run([sys.executable, "-m", "benchmarks.resolution", "--one", name, str(k), "--batch-size",
                                   str(args.batch_size), "--device", args.device], capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results["rows"].append(row)
            print(f"{name} k={k}: {row['images_per_second_warm']:.1f} images/s warm, {row['times_floor']:.1f}× floor, "
                  f"generator {100 * row['generator_share']:.0f} %, peak {row['peak_memory_gib']:.2f} GiB", flush=True)
    write_results(args.out.with_suffix(".json"), args.out.with_suffix(".md"), results, markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
