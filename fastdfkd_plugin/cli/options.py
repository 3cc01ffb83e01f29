"""Command-line options shared by every ``fastdfkd`` command, and the objects built from them.

Core commands (:mod:`fastdfkd_plugin.cli`) and the adapters' commands (registered
through ``fastdfkd_register_commands``) import these at top level: one definition of
the teacher, source, KD and checkpoint options, of the :class:`~fastdfkd_plugin.teacher.teacher.Teacher`
and source built from them, and of the :class:`~fastdfkd_plugin.training.distillation.DistillConfig`.
A source's own options come from the source (:attr:`~fastdfkd_plugin.sources.base.DataSource.options`):
:class:`CommandParser` adds those of the source ``--source`` names.
"""

from __future__ import annotations

import argparse
import operator
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import FastDFKDError
from ..evaluation.compressed import CompressedModel
from ..evaluation.fidelity import HELD_OUT_BATCH, HELD_OUT_SAMPLES, Fidelity, fidelity, held_out_options
from ..hooks.argtypes import floats, memory_size, positive, positive_float, positive_floats, shape
from ..sources.base import DataSource
from ..sources.memory_plan import plan_memory
from ..sources.registry import get_source, list_sources, source_class
from ..teacher.loading import load_model
from ..teacher.teacher import OutputTransform, Teacher
from ..training.distillation import DistillConfig

SOURCE_DEST = "source_option:"  # argparse destination prefix of a source's options: apart from the command's own


# -- the teacher ------------------------------------------------------------------------------------

def add_model_arguments(parser: argparse.ArgumentParser, flag: str = "--model", required: bool = True) -> None:
    """``--model SPEC [--weights PATH] [--allow-pickle] [--input-shape C,H,W] [--mean ...] [--std ...]``.

    ``--input-shape`` is checked when the teacher is loaded: an ONNX file that fixes its sizes needs none.
    """
    parser.add_argument(flag, dest="model", required=required,
                        help="path/to/file.py:callable, package.module:callable, a TorchScript file, or an ONNX file")
    weights = ["--weights"] if flag == "--model" else [f"{flag}-weights", "--weights"]
    parser.add_argument(*weights, dest="weights", help="state dict to load into the model (loaded with weights_only=True)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow loading pickled objects from the model/weights files; this RUNS CODE from those files, use only files you trust")
    parser.add_argument("--input-shape", type=shape,
                        help="C,H,W, e.g. 3,32,32 (needed unless the model is an ONNX file that fixes them)")
    parser.add_argument("--mean", type=floats, help="per-channel normalisation mean, e.g. 0.485,0.456,0.406 (default 0)")
    parser.add_argument("--std", type=positive_floats, help="per-channel normalisation std, e.g. 0.229,0.224,0.225 (default 1)")
    parser.add_argument("--raw-pixels", action="store_true",
                        help="the model takes pixels in [0, 1] as they are (no --mean/--std); needed to synthesise without them")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument("--output-index", type=int, help="the model returns a tuple/list: use only item N (e.g. its class logits)")
    pick.add_argument("--output-key", help="the model returns a dict: use only the entry under this key")
    parser.add_argument("--task", default="auto",
                        help="what the outputs are: auto (default: recognised from one forward pass), classification "
                             "(N×classes logits), segmentation (N×classes×H×W maps), sequence (N×positions×classes, e.g. a CTC "
                             "text recognizer), generic (any tensors, compared "
                             "element-wise), or a plugin's (see `fastdfkd tasks`)")


def output_transform(args: argparse.Namespace) -> OutputTransform | None:
    """What ``--output-index``/``--output-key`` say picks from the model's output (``None``: all of it)."""
    if args.output_index is not None:
        return operator.itemgetter(args.output_index)
    if args.output_key is not None:
        return operator.itemgetter(args.output_key)
    return None


def load_teacher(
    args: argparse.Namespace, input_shape: tuple[int, int, int] | None = None, device: str | torch.device | None = None
) -> Teacher:
    """The :class:`Teacher` the model options describe; ``input_shape``/``device`` override ``--input-shape``/``--device``."""
    input_shape = input_shape or args.input_shape
    model = load_model(args.model, args.weights, allow_pickle=args.allow_pickle, input_shape=input_shape)
    return Teacher(model, input_shape, mean=args.mean, std=args.std, device=device or args.device,
                   output_transform=output_transform(args), task=args.task)


# -- the source ---------------------------------------------------------------------------------

class CommandParser(argparse.ArgumentParser):
    """The parser of ``fastdfkd`` and its commands: a command that synthesises also takes its source's own options.

    They are added when the command's arguments are parsed, for the source those arguments
    name (``--source``, default ``fastdfkd``), so ``--source X --help`` lists X's options and
    an option that only other sources take is refused by name. Every command parser made
    through ``subparsers.add_parser`` is one of these.
    """

    source_defaults: dict[str, Any] | None = None  # set by add_source_arguments: the command takes a source
    source: type[DataSource] | None = None  # the source whose options were added

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        if self.source_defaults is None:
            return super().parse_known_args(args, namespace)
        args = sys.argv[1:] if args is None else list(args)
        if self.source is None:
            self.source = self._named_source(args)
            self._add_options_of(self.source)
        namespace, extras = super().parse_known_args(args, namespace)
        _refuse_other_sources_options(self.source, extras)
        return namespace, extras

    def _named_source(self, args: list[str]) -> type[DataSource]:
        named = argparse.ArgumentParser(add_help=False)
        named.add_argument("--source", default=self.get_default("source"))
        return source_class(named.parse_known_args(args)[0].source)

    def _add_options_of(self, source: type[DataSource]) -> None:
        group = self.add_argument_group(f"options of source {source.name!r}",
                                        "(--source NAME --help lists another source's; `fastdfkd sources` lists the sources)")
        for option in source.options:
            kwargs: dict[str, Any] = {"dest": SOURCE_DEST + option.keyword, "help": option.help,
                                      "default": self.source_defaults.get(option.keyword)}
            if option.const is None:
                kwargs.update(type=option.type, metavar=option.flags[-1].lstrip("-").replace("-", "_").upper())
            else:
                kwargs.update(action="store_const", const=option.const)
            try:
                group.add_argument(*option.flags, **kwargs)
            except argparse.ArgumentError as exc:
                raise FastDFKDError(f"source {source.name!r} has an option {'/'.join(option.flags)} that `{self.prog}` already "
                                    "has for itself; rename the source's option") from exc


def _refuse_other_sources_options(source: type[DataSource], extras: list[str]) -> None:
    """An option the chosen source does not take but others do: one sentence naming both, not "unrecognized arguments"."""
    owners: dict[str, list[str]] = {}
    for entry in list_sources():
        for option in entry.cls.options:
            for flag in option.flags:
                owners.setdefault(flag, []).append(entry.name)
    for flag in (extra.split("=", 1)[0] for extra in extras):
        if flag in owners:
            raise FastDFKDError(f"source {source.name!r} does not take {flag}, an option of {', '.join(owners[flag])}; "
                                f"drop it, or choose that source with --source")


def add_source_arguments(parser: CommandParser, default_samples: int | None = None, with_samples: bool = True,
                         source_defaults: dict[str, Any] | None = None) -> None:
    """``[--source NAME] [--num-samples N] [--batch-size B] [--seed S] ...`` and the options of the source named.

    ``with_samples=False`` leaves out ``--num-samples`` for commands that draw batches as they go;
    ``source_defaults`` are this command's defaults for source options (by constructor keyword),
    used when the source takes that option.
    """
    parser.source_defaults = dict(source_defaults or {})
    parser.add_argument("--source", default="fastdfkd", help="data source name (see `fastdfkd sources`; default fastdfkd); "
                                                             "its own options are listed below")
    parser.add_argument("--save-generator-state", help="save the fastdfkd generator state afterwards, for reuse with --generator-state")
    if with_samples:
        parser.add_argument("--num-samples", type=positive, required=default_samples is None, default=default_samples)
    parser.add_argument("--batch-size", type=positive, default=64, help="synthesis batch (default 64; the memory plan "
                                                                      "lowers it where it would not fit)")
    add_memory_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the teacher and generator forwards (mainly for CUDA)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """``--memory-budget SIZE`` and ``--no-memory-plan``: what :func:`planned_batch` reads."""
    parser.add_argument("--memory-budget", type=memory_size, help="memory the whole command may use, e.g. 8G (default: half "
                                                                  "of what there is); batches are sized to it before work starts")
    parser.add_argument("--no-memory-plan", action="store_true", help="skip the memory plan: batches exactly as given")


def planned_batch(args: argparse.Namespace, source: DataSource, batch_size: int, num_samples: int) -> int:
    """The synthesis batch the memory plan allows for ``source`` (at most ``batch_size``) beside the set of
    ``num_samples`` it builds in memory, its line printed on stderr."""
    if args.no_memory_plan:
        return batch_size
    return plan_memory(source, batch_size, budget=args.memory_budget, resident=source.set_bytes(num_samples),
                       progress=not args.quiet).synthesis_batch


def held_out_batch(args: argparse.Namespace, teacher: Teacher, num_samples: int, options: dict[str, Any] | None = None) -> int:
    """The synthesis batch the memory plan allows the held-out set that fidelity synthesises (``fastdfkd`` with
    ``options``): what ``evaluate`` and every compressing command's closing estimate use."""
    source = get_source("fastdfkd", teacher, seed=args.seed, **(options or {}))
    return planned_batch(args, source, HELD_OUT_BATCH, num_samples)


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of the chosen source that the user (or the command) gave; unset ones keep the source's defaults."""
    return {dest.removeprefix(SOURCE_DEST): value for dest, value in vars(args).items()
            if dest.startswith(SOURCE_DEST) and value is not None}


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


def kd_config(args: argparse.Namespace, steps: int, steps_per_batch: int) -> DistillConfig:
    """The KD settings from :func:`add_kd_arguments` and the source's ``--batch-size``/``--seed``."""
    return DistillConfig(
        steps=steps, batch_size=args.kd_batch_size, synthesis_batch_size=args.batch_size, steps_per_batch=steps_per_batch,
        bank_size=args.bank_size, lr=args.lr, temperature=args.temperature, seed=args.seed,
    )


# -- checkpoints ---------------------------------------------------------------------------------

def add_checkpoint_arguments(parser: argparse.ArgumentParser, every: int) -> None:
    """``--checkpoint PATH --checkpoint-every N --resume [PATH] --overwrite``: one convention for every long command."""
    parser.add_argument("--checkpoint", help="checkpoint path (default OUT.ckpt), written atomically")
    parser.add_argument("--checkpoint-every", type=positive, default=every, help="KD steps between checkpoints")
    parser.add_argument("--resume", nargs="?", const=True, metavar="PATH",
                        help="continue from --checkpoint (or from the checkpoint given here) with the same teacher and settings")
    parser.add_argument("--overwrite", action="store_true", help="start again even though the checkpoint exists")


def checkpoint_paths(args: argparse.Namespace) -> tuple[str, str | None]:
    """(where checkpoints are written, the one resumed from or ``None``); an earlier run's checkpoint is never
    overwritten by accident: it must be resumed or overwritten on purpose."""
    checkpoint = args.resume if isinstance(args.resume, str) else args.checkpoint or f"{args.out}.ckpt"
    if args.resume and not Path(checkpoint).is_file():
        raise FastDFKDError(f"checkpoint {checkpoint} does not exist, so there is nothing to resume; check the path "
                            "(--resume PATH or --checkpoint PATH) or start without --resume")
    if Path(checkpoint).exists() and not args.resume and not args.overwrite:
        raise FastDFKDError(f"checkpoint {checkpoint} exists from an earlier run; pass --resume to continue it "
                            "or --overwrite to start again")
    return checkpoint, checkpoint if args.resume else None


# -- the closing estimate -------------------------------------------------------------------------

def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-evaluate``: what :func:`report_fidelity` reads."""
    parser.add_argument("--no-evaluate", action="store_true",
                        help="skip the closing estimate of how much of the teacher's accuracy the result keeps "
                             "(held-out synthetic images; docs/fidelity.md)")


def report_fidelity(args: argparse.Namespace, teacher: Teacher, model: CompressedModel, fix: str,
                    model_output_transform: OutputTransform | None = None) -> Fidelity | None:
    """Estimate what ``model`` keeps of ``teacher``'s accuracy and print it, with a warning naming ``fix`` when it is
    low; ``None`` with ``--no-evaluate``. Every compressing command ends with this. ``model_output_transform``: as
    :func:`~fastdfkd_plugin.evaluation.fidelity.fidelity` takes it (the teacher's own for a compressed copy)."""
    if args.no_evaluate:
        return None
    options = held_out_options(args.source, source_options(args))
    result = fidelity(teacher, model, seed=args.seed, progress=not args.quiet, model_output_transform=model_output_transform,
                      source_options=options, batch_size=held_out_batch(args, teacher, HELD_OUT_SAMPLES, options))
    print_fidelity(result, fix)
    return result


def print_fidelity(result: Fidelity, fix: str) -> None:
    """The estimate on stdout; below :data:`~fastdfkd_plugin.evaluation.fidelity.LOW_FIDELITY`, a warning naming ``fix``
    on stderr."""
    print(result.summary())
    warning = result.warning(fix)
    if warning:
        print(f"fastdfkd: {warning}", file=sys.stderr)
