"""The ``fastdfkd`` command line. User errors print one sentence and exit with status 2."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

import torch

from . import __version__
from .errors import FastDFKDError

log = logging.getLogger("fastdfkd_plugin")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got {text!r}") from exc
    if len(shape) != 3 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive sizes C,H,W such as 3,32,32, got {text!r}")
    return shape


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def cmd_sources(args: argparse.Namespace) -> None:
    from .plugins import list_sources

    entries = list_sources()
    width = max(len(e.name) for e in entries)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.plugin}\n{'':<{width}}  {entry.description}")


def cmd_synthesize(args: argparse.Namespace) -> None:
    from .loading import load_model
    from .plugins import get_source
    from .preview import image_grid, write_png

    teacher = load_model(args.model, args.weights, allow_pickle=args.allow_pickle)
    options: dict = {}
    if args.steps is not None:
        options["steps"] = args.steps
    if args.warmup_tasks is not None:
        options["warmup_tasks"] = args.warmup_tasks
    if args.generator_state is not None:
        options["state_path"] = args.generator_state
    source = get_source(
        args.source, teacher, args.input_shape, mean=args.mean, std=args.std, device=args.device, seed=args.seed,
        autocast_dtype=torch.bfloat16 if args.bf16 else None, progress=not args.quiet, **options,
    )
    synthetic = source.synthetic_set(args.num_samples, args.batch_size)
    synthetic.save(args.out)
    if args.save_generator_state:
        source.save_state(args.save_generator_state)
    if args.preview:
        write_png(args.preview, image_grid(source.space.denormalize(synthetic.inputs[:64]), columns=8), scale=2)
    meta = synthetic.metadata
    print(f"wrote {args.num_samples} {args.source} samples to {args.out} "
          f"({meta['seconds']:.1f} s, {meta['images_per_second']:.1f} images/s on {meta['device']})")
    if args.preview:
        print(f"preview grid: {args.preview}")


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out_dir, seed=args.seed, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdfkd", description="Data from the model itself, for compression toolkits.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (INFO level)")
    commands = parser.add_subparsers(dest="command", required=True)

    sources = commands.add_parser("sources", help="list every data source and the plugin it comes from")
    sources.set_defaults(run=cmd_sources)

    synth = commands.add_parser("synthesize", help="synthesise a set of model inputs from the teacher alone")
    synth.add_argument("--model", required=True, help="path/to/file.py:callable, package.module:callable, or a TorchScript file")
    synth.add_argument("--weights", help="state dict to load into the model (loaded with weights_only=True)")
    synth.add_argument("--allow-pickle", action="store_true",
                       help="allow loading pickled objects from --model/--weights; this RUNS CODE from those files, use only files you trust")
    synth.add_argument("--input-shape", required=True, type=_shape, help="C,H,W, e.g. 3,32,32")
    synth.add_argument("--mean", type=_floats, help="per-channel normalisation mean, e.g. 0.485,0.456,0.406 (default 0)")
    synth.add_argument("--std", type=_floats, help="per-channel normalisation std, e.g. 0.229,0.224,0.225 (default 1)")
    synth.add_argument("--source", default="fastdfkd", help="data source name (see `fastdfkd sources`; default fastdfkd)")
    synth.add_argument("--steps", type=_positive, help="optimisation steps per batch (fastdfkd k, default 5; deepinversion default 2000)")
    synth.add_argument("--warmup-tasks", type=int, help="fastdfkd meta-learning tasks before the first batch (default 20)")
    synth.add_argument("--generator-state", help="load a warm fastdfkd generator state saved for this teacher (skips the warm-up)")
    synth.add_argument("--save-generator-state", help="save the fastdfkd generator state afterwards, for reuse with --generator-state")
    synth.add_argument("--num-samples", required=True, type=_positive)
    synth.add_argument("--batch-size", type=_positive, default=64)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    synth.add_argument("--bf16", action="store_true", help="bf16 autocast for teacher forwards (mainly for CUDA)")
    synth.add_argument("--out", required=True, help="output .npz (inputs, labels, metadata)")
    synth.add_argument("--preview", help="also write an image grid of the first 64 samples (PNG)")
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(run=cmd_synthesize)

    demo = commands.add_parser("demo", help="end-to-end demo on scikit-learn's bundled digits (about 2 minutes on 2 cores)")
    demo.add_argument("--out-dir", default="fastdfkd-demo", help="where the preview grid, set and results go")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except FastDFKDError as exc:
        print(f"fastdfkd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastdfkd: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
