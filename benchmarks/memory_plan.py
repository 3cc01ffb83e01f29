"""Peak memory of `fastdfkd quantize-onnx` on PaddleOCR's three graphs, and of `distill` and `prune` at 224 px,
with and without the memory plan.

Each command runs in its own process, as a user runs it; its peak resident set is the larger
of the kernel's (``ru_maxrss`` of the finished child) and the resident set sampled twice a
second, and its plan line is quoted from its stderr. The graphs come from the
``rapidocr-onnxruntime`` wheel (the ``test`` extra); without the plan, runs are stopped by a
watchdog at ``--kill-at`` GiB rather than the kernel at the machine's size. `distill` and `prune`
run a small CNN from the tests (``tests/models.py``) at 3×224×224 with a new batch of 64 every KD
step, so that the image bank outgrows what ``--budget`` allows within 40 steps.

    python -m benchmarks.memory_plan --models rec,det,cls --num-samples 256 --out docs/benchmarks/memory_plan
    python -m benchmarks.memory_plan --models distill,prune --budget 2G --out docs/benchmarks/memory_plan_training
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common.cli import benchmark_parser, choice_list
from .common.paddleocr import GRAPHS, MEAN_STD, graph_path
from .common.processes import GIB, run_measured
from .common.report import environment, heading, publish


def measured(command: list[str], kill_at: float, env: dict[str, str]) -> dict[str, Any]:
    """``command``'s wall time, peak resident memory and plan line, stopped above ``kill_at`` bytes."""
    run = run_measured(command, kill_at, env, capture=True)
    plan = re.search(r"memory plan: .*", run.stderr)
    return {"seconds": round(run.seconds, 1), "peak_gib": round(run.peak_bytes / GIB, 2), "returncode": run.returncode,
            "killed_at_gib": round(kill_at / GIB, 1) if run.killed else None, "plan": plan.group(0) if plan else None,
            "last_line": (run.stdout.strip().splitlines() or run.stderr.strip().splitlines() or [""])[-1][:300]}


TRAINING_COMMON = ["--input-shape", "3,224,224", "--raw-pixels", "--batch-size", "64", "--steps", "2", "--warmup-tasks", "1",
                   "--overwrite"]
TRAINING = {  # a new batch of 64 every KD step: 40 steps put 2,560 images of 0.6 MB in an uncapped bank
    "distill": ["distill", "--teacher", "tests/models.py:tiny", "--student", "tests/models.py:student", "--kd-batch-size", "64",
                "--kd-steps", "40", "--kd-steps-per-batch", "1", "--eval-samples", "64", "--eval-every", "1000", "--no-plot"],
    "prune": ["prune", "--model", "tests/models.py:tiny", "--speed-up", "1.5", "--kd-batch-size", "48", "--recovery-steps", "40",
              "--steps-per-batch", "1"],
}


def command_for(name: str, args: argparse.Namespace, out: Path) -> list[str]:
    """The command line measured for a PaddleOCR graph (quantize-onnx) or a training command (distill, prune)."""
    if name in TRAINING:
        return [sys.executable, "-m", "fastdfkd_plugin.cli", *TRAINING[name], *TRAINING_COMMON, "--seed", str(args.seed),
                "--out", str(out.with_suffix(".pt"))]
    mean_std = ",".join(map(str, MEAN_STD))
    return [sys.executable, "-m", "fastdfkd_plugin.cli", "quantize-onnx", "--onnx", str(graph_path(name)),
            "--input-shape", ",".join(map(str, GRAPHS[name][1])), "--mean", mean_std, "--std", mean_std,
            "--num-samples", str(args.num_samples), "--weight-type", "int8", "--activation-type", "int8",
            "--per-channel", "--seed", str(args.seed), "--out", str(out)]


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--models", type=choice_list([*GRAPHS, *TRAINING]), default=list(GRAPHS),
                        help="PaddleOCR graphs to quantize, or the training commands distill and prune")
    parser.add_argument("--budget", help="--memory-budget of the runs with the plan (default: the commands' own, half the machine)")
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--plans", type=choice_list(["plan", "no-plan"]), default=["plan", "no-plan"])
    parser.add_argument("--kill-at", type=float, default=12.0, help="GiB at which a run is stopped (the issue's goal)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "fastdfkd-benchmarks" / "memory_plan",
                        help="warm-state cache shared by the runs (the first run of each graph pays the warm-up)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/memory_plan"))
    args = parser.parse_args(argv)
    env = {**os.environ, "FASTDFKD_CACHE_DIR": str(args.cache_dir)}
    runs = []
    with tempfile.TemporaryDirectory(prefix="memory-plan-") as workdir:
        for name in args.models:
            for plan in args.plans:
                command = [*command_for(name, args, Path(workdir) / f"{name}.onnx"),
                           *(["--no-memory-plan"] if plan == "no-plan" else ["--memory-budget", args.budget] if args.budget else [])]
                result = measured(command, args.kill_at * GIB, env)
                runs.append({"model": name, "memory_plan": plan == "plan", **result})
                print(runs[-1], flush=True)
    results = {"environment": environment(), "num_samples": args.num_samples, "kill_at_gib": args.kill_at, "budget": args.budget,
               "runs": runs}
    lines = heading("Peak memory with and without the memory plan", results,
                    "quantize-onnx: W8A8 per-channel, {num_samples} samples; distill and prune: a small CNN at 224 px, 40 KD "
                    "steps (`benchmarks/memory_plan.py`); batch 64 asked; memory budget {budget_text}; torch {torch}, "
                    "{threads} threads; runs above {kill_at_gib} GiB are stopped. Wall times are from a shared machine.",
                    budget_text=args.budget or "the commands' default")
    lines += ["| graph or command | memory plan | peak resident GiB | wall s | outcome | plan line |", "| --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        outcome = f"stopped at {run['killed_at_gib']} GiB" if run["killed_at_gib"] else ("done" if run["returncode"] == 0 else f"exit {run['returncode']}")
        lines.append(f"| {run['model']} | {'on' if run['memory_plan'] else 'off'} | {run['peak_gib']} | {run['seconds']} | {outcome} | "
                     f"{(run['plan'] or '').removeprefix('memory plan: ')} |")
    publish(args.out, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
