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
    parser.add_argument("--weights", help="state dict to load into the model (loaded with weights_only=True)")
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


def source_from_args(args: argparse.Namespace, teacher: nn.Module, input_shape: tuple[int, int, int] | None = None) -> DataSource:
    """Create the source the shared options describe (only the options the user gave are passed on)."""
    from .plugins import get_source

    return get_source(
        args.source, teacher, input_shape or args.input_shape, mean=args.mean, std=args.std, device=args.device,
        seed=args.seed, autocast_dtype=torch.bfloat16 if args.bf16 else None, progress=not args.quiet,
        **source_options(args),
    )


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
