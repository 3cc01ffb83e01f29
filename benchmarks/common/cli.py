"""The command-line pieces benchmarks share: the options every one takes, list-valued options, the teacher-training command.

Every script is ``python -m benchmarks.NAME [options]`` with a ``main(argv)`` that
parses ``argv`` (``None``: the process's own arguments), so tests can run
``main(["--help"])`` in-process.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Iterable

from .data import accuracy, default_data_dir, load_images, resize
from .teachers import TRAINED, load_teacher, teacher_input_shape


def benchmark_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: where the data is, the seed, the device."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="folder with cifar10/ and teachers/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    return parser


def int_list(text: str) -> list[int]:
    """``--seeds 0,1,2`` → [0, 1, 2]."""
    return [int(value) for value in text.split(",")]


def choice_list(known: Iterable[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated, non-empty subset of ``known``, in the order given."""
    known = list(known)

    def parse(text: str) -> list[str]:
        chosen = [name.strip() for name in text.split(",") if name.strip()]
        if not chosen or any(name not in known for name in chosen):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(known)}, not {text!r}")
        return chosen
    return parse


def float_list(text: str) -> list[float]:
    """``--prior-weights 0.5,1`` → [0.5, 1.0]."""
    return [float(value) for value in text.split(",")]


def train_teacher_main(name: str, description: str | None, argv: list[str] | None) -> None:
    """``python -m benchmarks.<teacher> [--epochs N]``: train the named teacher (once, then cached) or load it,
    then print its accuracy on ``test_a`` at its own input size."""
    parser = benchmark_parser(description)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    model = load_teacher(name, args.data_dir, epochs=args.epochs)
    x, y = load_images("test_a", args.data_dir)
    score = accuracy(model, resize(x, teacher_input_shape(name)[-1]), y)
    print(f"{TRAINED[name].name} ({args.epochs} epochs): {score:.2f} % on test_a", flush=True)
