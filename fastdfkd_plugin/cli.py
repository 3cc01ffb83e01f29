"""The ``fastdfkd`` command line. User errors print one sentence and exit with status 2.

Core commands live here; toolkit adapters add theirs through the
``fastdfkd_register_commands`` hook, using the shared option helpers below.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

import torch
from torch import nn

from . import __version__
from .errors import FastDFKDError
from .sources.base import DataSource

log = logging.getLogger("fastdfkd_plugin")


def floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got {text!r}") from exc
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive sizes C,H,W such as 3,32,32, got {text!r}")
    return values


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# -- options shared by every command that takes a teacher and a source --------------------------

def add_model_arguments(parser: argparse.ArgumentParser, flag: str = "--model", input_shape_required: bool = True) -> None:
    """``--model SPEC [--weights PATH] [--allow-pickle] --input-shape C,H,W [--mean ...] [--std ...]``."""
    parser.add_argument(flag, dest="model", required=True,
                        help="path/to/file.py:callable, package.module:callable, or a TorchScript file")
    weights = ["--weights"] if flag == "--model" else [f"{flag}-weights", "--weights"]
    parser.add_argument(*weights, dest="weights", help="state dict to load into the model (loaded with weights_only=True)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow loading pickled objects from the model/weights files; this RUNS CODE from those files, use only files you trust")
    parser.add_argument("--input-shape", required=input_shape_required, type=shape, help="C,H,W, e.g. 3,32,32")
    parser.add_argument("--mean", type=floats, help="per-channel normalisation mean, e.g. 0.485,0.456,0.406 (default 0)")
    parser.add_argument("--std", type=floats, help="per-channel normalisation std, e.g. 0.229,0.224,0.225 (default 1)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")


def add_source_arguments(parser: argparse.ArgumentParser, default_samples: int | None = None, with_samples: bool = True) -> None:
    """``[--source NAME] [--steps K] [--warmup-tasks N] [--generator-state PATH] --num-samples N ...``.

    ``with_samples=False`` leaves out ``--num-samples`` for commands that draw batches as they go.
    """
    parser.add_argument("--source", default="fastdfkd", help="data source name (see `fastdfkd sources`; default fastdfkd)")
    parser.add_argument("--steps", type=positive, help="optimisation steps per batch (fastdfkd k, default 5; deepinversion default 2000)")
    parser.add_argument("--warmup-tasks", type=int, help="fastdfkd meta-learning tasks before the first batch (default 20)")
    parser.add_argument("--generator-state", help="load a warm fastdfkd generator state saved for this teacher (skips the warm-up)")
    parser.add_argument("--save-generator-state", help="save the fastdfkd generator state afterwards, for reuse with --generator-state")
    if with_samples:
        parser.add_argument("--num-samples", type=positive, required=default_samples is None, default=default_samples)
    parser.add_argument("--batch-size", type=positive, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for teacher forwards (mainly for CUDA)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def load_teacher(args: argparse.Namespace) -> nn.Module:
    from .loading import load_model

    return load_model(args.model, args.weights, allow_pickle=args.allow_pickle)


def source_from_args(
    args: argparse.Namespace, teacher: nn.Module, input_shape: tuple[int, int, int] | None = None, **overrides
) -> DataSource:
    """Create the source the shared options describe (only the options the user gave are passed on).

    ``overrides`` replace constructor options (a torchrun process sets its own device and seed).
    """
    from .plugins import get_source

    options = dict(
        mean=args.mean, std=args.std, device=args.device, seed=args.seed,
        autocast_dtype=torch.bfloat16 if args.bf16 else None, progress=not args.quiet, **source_options(args),
    )
    return get_source(args.source, teacher, input_shape or args.input_shape, **{**options, **overrides})


def source_options(args: argparse.Namespace) -> dict:
    """The source-specific options the user gave (unset ones keep each source's defaults)."""
    given = (("steps", args.steps), ("warmup_tasks", args.warmup_tasks), ("state_path", args.generator_state))
    return {key: value for key, value in given if value is not None}


def save_generator_state(args: argparse.Namespace, source: DataSource) -> None:
    if args.save_generator_state:
        if not hasattr(source, "save_state"):
            raise FastDFKDError(f"source {source.name!r} has no generator state to save; drop --save-generator-state")
        source.save_state(args.save_generator_state)


# -- core commands ------------------------------------------------------------------------------

def cmd_sources(args: argparse.Namespace) -> None:
    from .plugins import list_sources

    entries = list_sources()
    width = max(len(e.name) for e in entries)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.plugin}\n{'':<{width}}  {entry.description}")


def cmd_synthesize(args: argparse.Namespace) -> None:
    from .preview import image_grid, write_png

    source = source_from_args(args, load_teacher(args))
    synthetic = source.synthetic_set(args.num_samples, args.batch_size)
    synthetic.save(args.out)
    save_generator_state(args, source)
    if args.preview:
        write_png(args.preview, image_grid(source.space.denormalize(synthetic.inputs[:64]), columns=8), scale=2)
    meta = synthetic.metadata
    print(f"wrote {args.num_samples} {args.source} samples to {args.out} "
          f"({meta['seconds']:.1f} s, {meta['images_per_second']:.1f} images/s on {meta['device']})")
    if args.preview:
        print(f"preview grid: {args.preview}")


def cmd_distill(args: argparse.Namespace) -> None:
    """Data-free distillation (Algorithm 1); under torchrun, one process per device."""
    from . import distributed
    from .distillation import DistillConfig, Distiller, agreement
    from .io import atomic_path, check_output_folder, load_npz
    from .loading import load_model
    from .metrics import plot_against_time, require_matplotlib, write_jsonl

    check_output_folder(args.out)
    if not args.no_plot:
        require_matplotlib()
    context = distributed.setup(args.device)
    teacher = load_teacher(args)
    student = load_model(args.student, args.student_weights, allow_pickle=args.allow_pickle).to(context.device)
    source = source_from_args(args, teacher, device=context.device, seed=args.seed + context.rank,
                              progress=not args.quiet and context.main)
    if context.world_size > 1 and hasattr(source, "synthesizer"):
        distributed.share_meta_generator(source.synthesizer)
    teacher = source.teacher
    if args.eval_data:
        inputs, labels, _ = load_npz(args.eval_data)
        eval_x, eval_y = torch.as_tensor(inputs, device=context.device), torch.as_tensor(labels, device=context.device)

        def evaluate(model: nn.Module) -> dict[str, float]:
            predictions = torch.cat([model(eval_x[i : i + 256]).argmax(1) for i in range(0, len(eval_y), 256)])
            return {"accuracy": (predictions == eval_y).float().mean().item()}
    else:
        held_out = source.synthetic_set(args.eval_samples, args.batch_size).inputs  # never enters the bank

        def evaluate(model: nn.Module) -> dict[str, float]:
            return {"agreement": agreement(teacher, model, held_out)}

    config = DistillConfig(
        steps=args.epochs * args.kd_steps_per_epoch, batch_size=args.kd_batch_size, synthesis_batch_size=args.batch_size,
        steps_per_batch=args.kd_steps_per_epoch, bank_size=args.bank_size, lr=args.lr, temperature=args.temperature,
        seed=args.seed,
    )
    distiller = Distiller(teacher, student, source, config)
    checkpoint = args.checkpoint or f"{args.out}.ckpt"
    if args.resume:
        distiller.resume(args.resume)
    try:
        distiller.run(evaluate, args.eval_every, checkpoint, args.checkpoint_every, progress=not args.quiet and context.main)
    except KeyboardInterrupt:
        if context.main:
            print(f"fastdfkd: interrupted at step {distiller.step}; resume with --resume {checkpoint}", file=sys.stderr)
        raise SystemExit(130) from None
    if context.world_size > 1:
        modules = {"student": student, **({"meta-generator": source.synthesizer.generator} if hasattr(source, "synthesizer") else {})}
        distributed.check_in_sync(modules, context.device)
    if not context.main:
        return
    with atomic_path(args.out) as tmp:
        torch.save(student.state_dict(), tmp)
    metrics = args.metrics or f"{args.out}.metrics.jsonl"
    write_jsonl(metrics, distiller.log.evaluations)
    if not args.no_plot:
        plot_against_time(f"{args.out}.metrics.png", distiller.log.evaluations, title="distillation")
    last = distiller.log.evaluations[-1]
    shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("step", "seconds"))
    print(f"{distiller.step} KD steps on {context.world_size} process(es) in {distiller.log.seconds:.0f} s "
          f"(synthesis {distiller.log.synthesis_seconds:.0f} s): {shown}")
    print(f"wrote {args.out} (student state dict), {metrics}" + ("" if args.no_plot else f", {args.out}.metrics.png"))


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out_dir, seed=args.seed, device=args.device, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdfkd", description="Data from the model itself, for compression toolkits.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (INFO level)")
    commands = parser.add_subparsers(dest="command", required=True)

    sources = commands.add_parser("sources", help="list every data source and the plugin it comes from")
    sources.set_defaults(run=cmd_sources)

    synth = commands.add_parser("synthesize", help="synthesise a set of model inputs from the teacher alone")
    add_model_arguments(synth)
    add_source_arguments(synth)
    synth.add_argument("--out", required=True, help="output .npz (inputs, labels, metadata)")
    synth.add_argument("--preview", help="also write an image grid of the first 64 samples (PNG)")
    synth.set_defaults(run=cmd_synthesize)

    distill = commands.add_parser("distill", help="data-free distillation of a student from the teacher alone (torchrun-ready)")
    add_model_arguments(distill, flag="--teacher")
    add_source_arguments(distill, with_samples=False)
    distill.add_argument("--student", required=True, help="student SPEC, like --teacher (random init unless --student-weights)")
    distill.add_argument("--student-weights", help="initial student state dict (weights_only load)")
    distill.add_argument("--epochs", type=positive, default=220, help="epochs of one synthesis task + KD steps (paper: 220)")
    distill.add_argument("--kd-steps-per-epoch", type=positive, default=400, help="KD steps per synthesis task (paper: 400)")
    distill.add_argument("--kd-batch-size", type=positive, default=256)
    distill.add_argument("--bank-size", type=positive, default=50_000, help="synthetic images kept in memory for KD")
    distill.add_argument("--lr", type=float, default=0.2, help="student SGD learning rate, cosine schedule (paper: 0.2)")
    distill.add_argument("--temperature", type=float, default=20.0, help="KD temperature τ (paper: 20 on CIFAR)")
    distill.add_argument("--eval-data", help="your own validation set (.npz with normalised inputs and labels) for accuracy")
    distill.add_argument("--eval-samples", type=positive, default=512, help="held-out synthetic images for agreement when no --eval-data")
    distill.add_argument("--eval-every", type=positive, default=400, help="KD steps between evaluations")
    distill.add_argument("--checkpoint", help="checkpoint path (default OUT.ckpt), written atomically")
    distill.add_argument("--checkpoint-every", type=positive, default=400)
    distill.add_argument("--resume", help="continue from this checkpoint (same teacher and settings)")
    distill.add_argument("--metrics", help="JSON-lines metrics file (default OUT.metrics.jsonl)")
    distill.add_argument("--no-plot", action="store_true", help="skip the metrics plot (needs matplotlib)")
    distill.add_argument("--out", required=True, help="student state dict (.pt)")
    distill.set_defaults(run=cmd_distill, batch_size=256)

    demo = commands.add_parser("demo", help="end-to-end demo on scikit-learn's bundled digits (about 1.5 minutes on 2 cores)")
    demo.add_argument("--out-dir", default="fastdfkd-demo", help="where the preview grid, set and results go")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=cmd_demo)

    from .plugins import get_plugin_manager

    get_plugin_manager().hook.fastdfkd_register_commands(subparsers=commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        run: Callable[[argparse.Namespace], None] = args.run
        run(args)
    except FastDFKDError as exc:
        print(f"fastdfkd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastdfkd: interrupted; no partial output was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
