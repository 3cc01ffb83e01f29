"""Command-line options shared by every ``fastdfkd`` command, and the objects built from them.

Core commands (:mod:`fastdfkd_plugin.cli`) and the adapters' commands (registered
through ``fastdfkd_register_commands``) import these at top level: one definition of
the teacher, source and KD options, of the :class:`~fastdfkd_plugin.teacher.Teacher`
and source built from them, and of the :class:`~fastdfkd_plugin.distillation.DistillConfig`.
"""

from __future__ import annotations

import argparse
import math
import operator
from pathlib import Path
from typing import Any

import torch

from .distillation import DistillConfig
from .errors import FastDFKDError
from .loading import load_model
from .plugins import get_source
from .sources.base import DataSource
from .teacher import OutputTransform, Teacher


def floats(text: str) -> list[float]:
    """Comma-separated finite numbers (``--mean``)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def positive_floats(text: str) -> list[float]:
    """Comma-separated finite positive numbers (``--std``)."""
    values = floats(text)
    if min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def positive_float(text: str) -> float:
    """One finite positive number (``--lr``, ``--temperature``)."""
    values = positive_floats(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"expected one number, got {text!r}")
    return values[0]


def shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got {text!r}") from exc
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive sizes C,H,W such as 3,32,32, got {text!r}")
    return values  # type: ignore[return-value]


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# -- the teacher ------------------------------------------------------------------------------------

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
    parser.add_argument("--std", type=positive_floats, help="per-channel normalisation std, e.g. 0.229,0.224,0.225 (default 1)")
    parser.add_argument("--raw-pixels", action="store_true",
                        help="the model takes pixels in [0, 1] as they are (no --mean/--std); needed to synthesise without them")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument("--output-index", type=int, help="the model returns a tuple/list: its class logits are item N")
    pick.add_argument("--output-key", help="the model returns a dict: its class logits are under this key")


def output_transform(args: argparse.Namespace) -> OutputTransform | None:
    """What ``--output-index``/``--output-key`` say picks the logits from the model's output (``None``: it is the logits)."""
    if args.output_index is not None:
        return operator.itemgetter(args.output_index)
    if args.output_key is not None:
        return operator.itemgetter(args.output_key)
    return None


def load_teacher(
    args: argparse.Namespace, input_shape: tuple[int, int, int] | None = None, device: str | torch.device | None = None
) -> Teacher:
    """The :class:`Teacher` the model options describe; ``input_shape``/``device`` override ``--input-shape``/``--device``."""
    model = load_model(args.model, args.weights, allow_pickle=args.allow_pickle)
    return Teacher(model, input_shape or args.input_shape, mean=args.mean, std=args.std, device=device or args.device,
                   output_transform=output_transform(args))


# -- the source ---------------------------------------------------------------------------------

def add_source_arguments(parser: argparse.ArgumentParser, default_samples: int | None = None, with_samples: bool = True) -> None:
    """``[--source NAME] [--steps K] [--warmup-tasks N] [--warmup-steps K] [--generator-state PATH] --num-samples N ...``.

    ``with_samples=False`` leaves out ``--num-samples`` for commands that draw batches as they go.
    """
    parser.add_argument("--source", default="fastdfkd", help="data source name (see `fastdfkd sources`; default fastdfkd)")
    parser.add_argument("--synthesis-steps", "--steps", dest="steps", type=positive,
                        help="optimisation steps per synthetic batch (fastdfkd's k, default 5; deepinversion default 2000)")
    parser.add_argument("--warmup-tasks", type=int, help="fastdfkd meta-learning tasks before the first batch (default 40)")
    parser.add_argument("--warmup-steps", type=positive, help="fastdfkd optimisation steps per warm-up task (default: k); fewer "
                                                               "make the first batch cheaper and fit the BN statistics less well")
    parser.add_argument("--generator", help="fastdfkd generator architecture: compact (default, sized to the teacher) or "
                                            "paper (the paper's CIFAR network), or one a plugin registers")
    parser.add_argument("--prior", help="fastdfkd/deepinversion inversion prior: auto (default: batchnorm for BN models, "
                                        "transformer for LayerNorm/attention ones, else generic) or a name "
                                        "(see `fastdfkd priors`)")
    parser.add_argument("--generator-state", help="load a warm fastdfkd generator state saved for this teacher (skips the warm-up)")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither use nor fill the cache of warm fastdfkd generators ($FASTDFKD_CACHE_DIR, default ~/.cache/fastdfkd)")
    parser.add_argument("--save-generator-state", help="save the fastdfkd generator state afterwards, for reuse with --generator-state")
    parser.add_argument("--no-flip", action="store_true",
                        help="fastdfkd/deepinversion: no mirrored images while inverting, for a teacher trained without "
                             "horizontal flips (digits, text)")
    parser.add_argument("--max-shift", type=int, help="fastdfkd/deepinversion: largest random shift in pixels while inverting "
                                                      "(default an eighth of the side); 0 for a teacher trained on centred "
                                                      "images without translation (digits, faces, documents)")
    if with_samples:
        parser.add_argument("--num-samples", type=positive, required=default_samples is None, default=default_samples)
    parser.add_argument("--batch-size", type=positive, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the teacher and generator forwards (mainly for CUDA)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """The source-specific options the user gave (unset ones keep each source's defaults)."""
    given = (("steps", args.steps), ("warmup_tasks", args.warmup_tasks),
             ("warmup_steps", args.warmup_steps), ("generator", args.generator), ("prior", args.prior),
             ("state_path", args.generator_state),
             ("cache", False if args.no_cache else None), ("flip", False if args.no_flip else None),
             ("shift", args.max_shift))
    return {key: value for key, value in given if value is not None}


def require_normalisation(args: argparse.Namespace) -> None:
    """Synthesising in the wrong input space is silent and ruinous: insist on --mean/--std or --raw-pixels."""
    if args.mean is None and args.std is None and not args.raw_pixels:
        raise FastDFKDError(
            "give the model's input normalisation with --mean and --std (e.g. ImageNet's 0.485,0.456,0.406 and "
            "0.229,0.224,0.225), or --raw-pixels if it takes pixels in [0, 1] as they are"
        )
    if args.raw_pixels and (args.mean is not None or args.std is not None):
        raise FastDFKDError("--raw-pixels means no normalisation; drop it or drop --mean/--std")


def source_from_args(args: argparse.Namespace, teacher: Teacher, **overrides: Any) -> DataSource:
    """The source the shared options describe, for ``teacher``; ``overrides`` replace constructor options."""
    require_normalisation(args)
    options = dict(seed=args.seed, autocast_dtype=torch.bfloat16 if args.bf16 else None, progress=not args.quiet,
                   **source_options(args))
    return get_source(args.source, teacher, **{**options, **overrides})


def save_generator_state(args: argparse.Namespace, source: DataSource) -> None:
    """``--save-generator-state``, if given (a source without a state says so)."""
    if args.save_generator_state:
        source.save_state(args.save_generator_state)


# -- knowledge distillation ---------------------------------------------------------------------

def add_kd_arguments(parser: argparse.ArgumentParser, *, batch_size: int, bank_size: int, lr: float, temperature: float,
                     paper: bool = False) -> None:
    """``--kd-batch-size``, ``--bank-size``, ``--lr``, ``--temperature`` with a command's own defaults."""
    said = " (paper: {})" if paper else ""
    parser.add_argument("--kd-batch-size", type=positive, default=batch_size, help="images per KD step" + said.format(256))
    parser.add_argument("--bank-size", type=positive, default=bank_size, help="synthetic images kept in memory for KD")
    parser.add_argument("--lr", type=positive_float, default=lr, help="student SGD learning rate, cosine schedule" + said.format(0.2))
    parser.add_argument("--temperature", type=positive_float, default=temperature, help="KD temperature τ" + said.format("20 on CIFAR"))


def refuse_existing_checkpoint(path: str | None, resuming: bool, overwrite: bool, resume_flag: str) -> None:
    """Never overwrite an earlier run's checkpoint by accident: it must be resumed or overwritten on purpose."""
    if path and Path(path).exists() and not resuming and not overwrite:
        raise FastDFKDError(f"checkpoint {path} exists from an earlier run; pass {resume_flag} to continue it "
                            "or --overwrite to start again")


def kd_config(args: argparse.Namespace, steps: int, steps_per_batch: int) -> DistillConfig:
    """The KD settings from :func:`add_kd_arguments` and the source's ``--batch-size``/``--seed``."""
    return DistillConfig(
        steps=steps, batch_size=args.kd_batch_size, synthesis_batch_size=args.batch_size, steps_per_batch=steps_per_batch,
        bank_size=args.bank_size, lr=args.lr, temperature=args.temperature, seed=args.seed,
    )
