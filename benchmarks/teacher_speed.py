"""Can the teacher's own pass get cheaper? Eager against channels_last and torch.compile.

    python -m benchmarks.teacher_speed [--teachers resnet20,mobilenet_v1_025_96,mobilenet_v2_224] [--device cuda] [--bf16]

The teacher's forward+backward (gradient to the inputs) is the floor of every synthesis
step, so a layout or compiler that makes it cheaper would make every source cheaper. Per
teacher: milliseconds per batch eager, with the model and inputs in channels_last, and
through ``torch.compile`` (default mode), plus the one-off compile time, which a cold
512-image set would pay (Inductor's cache is pointed at a fresh folder, so nothing is reused). The synthesizer keeps neither unless it wins here everywhere.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from fastdfkd_plugin import resolve_device

from .common.cli import benchmark_parser
from .common.report import environment, publish
from .common.teachers import build_teacher
from .common.timing import floor_seconds_per_image

BATCH_SIZES = {"mobilenet_v2_224": 16, "resnet18_224": 16}  # the rest: 64


def measure(name: str, device: torch.device, bf16: bool) -> dict:
    teacher = build_teacher(name, device)
    model = teacher.model
    batch = BATCH_SIZES.get(name, 64)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        eager = floor_seconds_per_image(teacher, batch) * batch
        model.to(memory_format=torch.channels_last)
        channels_last = floor_seconds_per_image(teacher, batch) * batch  # inputs follow the weights' layout
        model.to(memory_format=torch.contiguous_format)
        compiled = torch.compile(model)
        started = time.perf_counter()
        floor_seconds_per_image(teacher, batch, compiled)  # the first calls compile
        compile_seconds = time.perf_counter() - started
        compiled_seconds = floor_seconds_per_image(teacher, batch, compiled) * batch
    row = {"teacher": name, "batch_size": batch, "eager_ms": 1000 * eager, "channels_last_ms": 1000 * channels_last,
           "compiled_ms": 1000 * compiled_seconds, "compile_seconds": compile_seconds}
    print(f"  {name}: eager {row['eager_ms']:.0f} ms, channels_last {eager / channels_last:.2f}×, "
          f"compile {eager / compiled_seconds:.2f}× after {compile_seconds:.0f} s", flush=True)
    return row


def markdown(results: dict) -> str:
    lines = ["# The teacher's forward+backward: eager, channels_last, torch.compile", "",
             f"Command: `{results['environment']['command']}` ({results['environment']['threads']} thread(s), "
             f"device {results['device']}{', bf16 autocast' if results['bf16'] else ''}).", "",
             "| teacher | batch | eager ms | channels_last | torch.compile | compile time |", "| --- | --- | --- | --- | --- | --- |"]
    for row in results["rows"]:
        lines.append(f"| {row['teacher']} | {row['batch_size']} | {row['eager_ms']:.0f} | "
                     f"{row['eager_ms'] / row['channels_last_ms']:.2f}× | {row['eager_ms'] / row['compiled_ms']:.2f}× | "
                     f"{row['compile_seconds']:.0f} s |")
    lines += ["", "Speed-ups over eager (above 1 is faster)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--teachers", default="resnet20,mobilenet_v1_025_96,mobilenet_v2_224")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/teacher_speed"))
    args = parser.parse_args(argv)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="teacher-speed-inductor-")  # compile from cold
    device = resolve_device(args.device)
    results = {"device": str(device), "bf16": args.bf16, "environment": environment(),
               "rows": [measure(name, device, args.bf16) for name in args.teachers.split(",")]}
    publish(args.out, results, markdown(results))


if __name__ == "__main__":
    main()
