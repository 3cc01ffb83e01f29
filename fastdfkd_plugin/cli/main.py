"""The ``fastdfkd`` command line. User errors print one sentence and exit with status 2.

Core commands live here; toolkit adapters add theirs through the
``fastdfkd_register_commands`` hook. Both take their options, teacher and source
from :mod:`fastdfkd_plugin.cli.options`; the work itself is library code.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from ..errors import FastDFKDError
from ..evaluation.fidelity import HELD_OUT_SAMPLES
from ..hooks.argtypes import positive, positive_float
from ..hooks.manager import call_each
from ..runtime import distributed
from ..runtime.io import atomic_path, check_disk_space, check_output_path
from ..runtime.memory import keep_freed_memory_unless_opted_out
from ..sources.calibration import calibration_source_options
from ..sources.registry import list_sources
from ..synthesis.registry import prior_registry
from ..teacher.inputspace import load_labelled
from ..teacher.loading import load_model
from ..teacher.tasks import DEFAULT_IGNORE_INDEX, slice_outputs, task_registry
from ..training.distillation import distill_datafree
from ..version import __version__
from .options import (
    CommandParser,
    add_checkpoint_arguments,
    add_evaluate_arguments,
    add_kd_arguments,
    add_memory_arguments,
    add_model_arguments,
    add_source_arguments,
    checkpoint_paths,
    held_out_batch,
    kd_config,
    load_teacher,
    planned_batch,
    report_fidelity,
    require_normalisation,
    save_generator_state,
    source_from_args,
    source_options,
)

DEFAULT_KD_STEPS = 2000
UNBOUNDED = 10**12  # KD steps when only a time budget ends the run
# Every command's output files, by argparse destination: checked before any work starts.
OUTPUT_OPTIONS = {"out": "--out", "preview": "--preview", "save_generator_state": "--save-generator-state",
                  "checkpoint": "--checkpoint", "metrics": "--metrics"}

log = logging.getLogger("fastdfkd_plugin")


# -- core commands ------------------------------------------------------------------------------

def cmd_sources(args: argparse.Namespace) -> None:
    entries = list_sources()
    width = max(len(e.name) for e in entries)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.plugin}\n{'':<{width}}  {entry.description}")


def print_by_rank(classes: Iterable[Any], heading: str) -> None:
    """Registered classes with a ``rank`` (priors, tasks) in the order ``auto`` tries them, one line each."""
    ranked = sorted(classes, key=lambda cls: -cls.rank)
    width = max(len(cls.name) for cls in ranked)
    print(heading)
    for cls in ranked:
        print(f"{cls.name:<{width}}  {cls.description()}")


def cmd_priors(args: argparse.Namespace) -> None:
    priors = prior_registry().values()
    print_by_rank(priors, "prior=auto picks the first that applies to the teacher, in this order:")
    skipped = ", ".join(sorted(cls.name for cls in priors if not cls.suits_calibration)) or "none"
    print(f"prior=auto-calibration (the quantize commands' default for 4-bit activations) picks the same way but skips: {skipped}")


def cmd_tasks(args: argparse.Namespace) -> None:
    print_by_rank(task_registry().values(), "--task auto picks the first that recognises the teacher's outputs, in this order:")


def cmd_synthesize(args: argparse.Namespace) -> None:
    from ..evaluation.preview import image_grid, write_png

    teacher = load_teacher(args)
    calibrating = {} if args.activation_bits is None else \
        calibration_source_options(args.source, args.activation_bits, teacher, source_options(args))
    source = source_from_args(args, teacher, **calibrating)
    check_disk_space(Path(args.out).parent, source.set_bytes(args.num_samples), f"{args.num_samples} samples",
                     "lower --num-samples or write --out to a larger disk")
    synthetic = source.synthetic_set(args.num_samples, planned_batch(args, source, args.batch_size, args.num_samples))
    synthetic.save(args.out)
    save_generator_state(args, source)
    if args.preview:
        shown = slice(0, 64)  # a segmenter's preview pairs each image with the teacher's label map: 32 of each
        pictures = source.teacher.task.preview(source.space.denormalize(synthetic.inputs[shown]), slice_outputs(synthetic.logits, shown))
        write_png(args.preview, image_grid(pictures[:64], columns=8), scale=2)
    meta = synthetic.metadata
    print(f"wrote {args.num_samples} {args.source} samples to {args.out} "
          f"({meta['seconds']:.1f} s, {meta['images_per_second']:.1f} images/s on {meta['device']})")
    if args.preview:
        print(f"preview grid: {args.preview}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from ..evaluation.compressed import load_compressed
    from ..evaluation.fidelity import fidelity

    require_normalisation(args)
    teacher = load_teacher(args)
    model = load_compressed(args.compressed, teacher, args.compressed_weights, allow_pickle=args.allow_pickle)
    result = fidelity(teacher, model, num_samples=args.num_samples, seed=args.seed, progress=not args.quiet,
                      model_output_transform=teacher.output_transform, batch_size=held_out_batch(args, teacher, args.num_samples))
    report = result.as_dict()
    if args.teacher_accuracy is not None and result.calibrated:
        report["estimated_accuracy"], report["estimated_accuracy_interval"] = result.estimated_accuracy(args.teacher_accuracy)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report) if args.json else f"{args.compressed}: {result.summary(args.teacher_accuracy)}")


def cmd_distill(args: argparse.Namespace) -> None:
    """Data-free distillation (Algorithm 1); under torchrun, one process per device."""
    from ..evaluation.metrics import plot_against_time, require_matplotlib, write_jsonl

    started = time.perf_counter()
    checkpoint, resume = checkpoint_paths(args)
    check_output_path(checkpoint, "--checkpoint")
    if not args.no_plot:
        require_matplotlib()
    context = distributed.setup(args.device)
    teacher = load_teacher(args, device=context.device)
    student = load_model(args.student, args.student_weights, allow_pickle=args.allow_pickle)
    source = source_from_args(args, teacher, progress=not args.quiet and context.main)
    eval_data = load_labelled(args.eval_data, teacher.space) if args.eval_data else None
    steps = args.kd_steps or (UNBOUNDED if args.minutes else DEFAULT_KD_STEPS)
    config = dataclasses.replace(kd_config(args, steps, args.kd_steps_per_batch), seconds=args.minutes and args.minutes * 60)
    try:
        distiller = distill_datafree(
            teacher, student, source, config, eval_data=eval_data, ignore_index=args.ignore_index,
            eval_samples=args.eval_samples, eval_every=args.eval_every,
            checkpoint=checkpoint, checkpoint_every=args.checkpoint_every, resume=resume, progress=not args.quiet,
            memory_budget=args.memory_budget, memory_plan=not args.no_memory_plan,
        )
    except KeyboardInterrupt:
        if context.main:
            print(f"fastdfkd: checkpoint written; continue with the same command and --resume {checkpoint}", file=sys.stderr)
        raise
    if not context.main:
        return
    with atomic_path(args.out) as tmp:
        torch.save(student.state_dict(), tmp)
    metrics = args.metrics or f"{args.out}.metrics.jsonl"
    write_jsonl(metrics, distiller.log.evaluations)
    if not args.no_plot:
        plot_against_time(f"{args.out}.metrics.png", distiller.log.evaluations, title="distillation")
    last = distiller.log.evaluations[-1]
    shown = ", ".join(f"{k.replace('_', ' ')} {v:.2f} %" for k, v in last.items() if k not in ("step", "seconds", "loss"))
    print(f"{distiller.step} KD steps on {context.world_size} process(es) in {time.perf_counter() - started:.0f} s "
          f"(training {distiller.log.seconds:.0f} s, of which synthesis {distiller.log.synthesis_seconds:.0f} s): {shown}")
    print(f"wrote {args.out} (student state dict), {metrics}" + ("" if args.no_plot else f", {args.out}.metrics.png"))
    report_fidelity(args, teacher, student.eval(), "distil longer (--minutes or --kd-steps) or into a larger student")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="fastdfkd", description="Data from the model itself, for compression toolkits.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (INFO level)")
    commands = parser.add_subparsers(dest="command", required=True)

    sources = commands.add_parser("sources", help="list every data source and the plugin it comes from")
    sources.set_defaults(run=cmd_sources)
    priors = commands.add_parser("priors", help="list the inversion priors fastdfkd/deepinversion choose from")
    priors.set_defaults(run=cmd_priors)
    tasks = commands.add_parser("tasks", help="list the kinds of teacher output (--task) and how auto picks one")
    tasks.set_defaults(run=cmd_tasks)

    synth = commands.add_parser("synthesize", help="synthesise a set of model inputs from the teacher alone")
    add_model_arguments(synth)
    add_source_arguments(synth)
    synth.add_argument("--out", required=True, help="output .npz (inputs, labels, metadata)")
    synth.add_argument("--preview", help="also write an image grid of the first 64 samples (PNG)")
    synth.add_argument("--activation-bits", type=positive,
                       help="a calibration set for activations of this many bits: the prior and weights the quantize commands "
                            "pick for that grid (4 or fewer: auto-calibration); a prior you name still wins")
    synth.set_defaults(run=cmd_synthesize)

    evaluate = commands.add_parser(
        "evaluate", help="estimate, without data, how much of the teacher's accuracy a compressed model keeps",
        description="Runs the teacher and the compressed model on a held-out synthetic set (its own seed, never a calibration "
                    "set) and turns their agreement into an estimate of the share of the teacher's accuracy kept, with a "
                    "95 % interval (docs/fidelity.md).")
    add_model_arguments(evaluate, flag="--teacher")
    evaluate.add_argument("--model", dest="compressed", required=True,
                          help="the compressed model: an .onnx file (run by ONNX Runtime), a .pt2 from quantize-torch, or a "
                               "model SPEC like --teacher's with --model-weights")
    evaluate.add_argument("--model-weights", dest="compressed_weights", help="state dict of a SPEC --model (e.g. from prune)")
    evaluate.add_argument("--num-samples", type=positive, default=HELD_OUT_SAMPLES, help=f"held-out synthetic inputs (default {HELD_OUT_SAMPLES})")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the held-out set (kept apart from every calibration seed)")
    evaluate.add_argument("--teacher-accuracy", type=positive_float, help="the teacher's accuracy in %%, for an absolute estimate")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    evaluate.add_argument("--out", help="also write the JSON report to this file")
    add_memory_arguments(evaluate)
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(run=cmd_evaluate)

    distill = commands.add_parser(
        "distill", help="data-free distillation of a student from the teacher alone (torchrun-ready)",
        description="Defaults finish in minutes on a CPU. The paper's CIFAR recipe is --kd-steps 88000 --kd-steps-per-batch 400 "
                    "--kd-batch-size 256 --batch-size 256 --lr 0.2 --temperature 20 --bank-size 50000 (hours on a GPU).")
    add_model_arguments(distill, flag="--teacher")
    add_source_arguments(distill, with_samples=False)
    distill.add_argument("--student", required=True, help="student SPEC, like --teacher (random init unless --student-weights)")
    distill.add_argument("--student-weights", help="initial student state dict (weights_only load)")
    distill.add_argument("--kd-steps", type=positive,
                         help=f"KD steps in all (default {DEFAULT_KD_STEPS}, minutes on a CPU; unbounded with --minutes; paper: 88000)")
    distill.add_argument("--minutes", type=positive_float, help="train for this long (synthesis included); the learning rate follows the time")
    distill.add_argument("--kd-steps-per-batch", "--kd-steps-per-epoch", type=positive, default=20,
                         help="KD steps per new synthetic batch (paper: 400)")
    add_kd_arguments(distill, batch_size=128, bank_size=8192, lr=0.05, temperature=4.0, paper=True)
    distill.add_argument("--eval-data", help="your own validation set for accuracy (mIoU and pixel accuracy for a segmenter): "
                                             ".npz with normalised `inputs` and `labels`, or uint8 `x` (N×H×W×C) and `y` "
                                             "(classes, or N×H×W label maps), normalised with --mean/--std")
    distill.add_argument("--ignore-index", type=int, default=DEFAULT_IGNORE_INDEX,
                         help=f"label of unlabelled pixels in --eval-data label maps, left out of the scores (default "
                              f"{DEFAULT_IGNORE_INDEX}; CamVid's is 11)")
    distill.add_argument("--eval-samples", type=positive, default=512, help="held-out synthetic images for agreement when no --eval-data")
    distill.add_argument("--eval-every", type=positive, default=200, help="KD steps between evaluations")
    add_checkpoint_arguments(distill, every=200)
    distill.add_argument("--metrics", help="JSON-lines metrics file (default OUT.metrics.jsonl)")
    distill.add_argument("--no-plot", action="store_true", help="skip the metrics plot (needs matplotlib)")
    distill.add_argument("--out", required=True, help="student state dict (.pt)")
    add_evaluate_arguments(distill)
    distill.set_defaults(run=cmd_distill)

    call_each("fastdfkd_register_commands", subparsers=commands)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that checkpoints are written and temporary files removed."""


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside, SIGTERM raises :class:`Terminated` like Ctrl-C raises KeyboardInterrupt (main thread only)."""
    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: 0 on success, 2 with one sentence on bad input, 130 on Ctrl-C, 143 on SIGTERM."""
    try:
        with sigterm_interrupts():
            args = build_parser().parse_args(argv)
            keep_freed_memory_unless_opted_out()
            logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                                format="%(levelname)s %(name)s: %(message)s")
            given = vars(args)
            for dest, flag in OUTPUT_OPTIONS.items():
                if given.get(dest):
                    check_output_path(given[dest], flag)
            run: Callable[[argparse.Namespace], None] = args.run
            run(args)
    except FastDFKDError as exc:
        print(f"fastdfkd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("fastdfkd: interrupted; outputs are written only when complete, so none was left half-written",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    return 0

