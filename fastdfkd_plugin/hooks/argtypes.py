"""Command-line value types: the ``type=`` callables of every ``fastdfkd`` option.

Each turns one argument into a value or raises ``argparse.ArgumentTypeError`` with one
line saying what was expected, which argparse prints with the usage and exit status 2.
They live apart from :mod:`fastdfkd_plugin.cli.options` so that sources can declare their own
command-line options (:class:`~fastdfkd_plugin.sources.base.SourceOption`) with them.
"""

from __future__ import annotations

import argparse
import math


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


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {value}")
    return value


MEMORY_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_size(text: str) -> int:
    """A size in bytes such as 8G, 512M or 1.5GiB (powers of 1024), for ``--memory-budget``."""
    number = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = number[-1:] if number[-1:] in MEMORY_UNITS else ""
    try:
        value = float(number.removesuffix(unit)) * MEMORY_UNITS[unit]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a size such as 8G or 512M, got {text!r}") from exc
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size such as 8G or 512M, got {text!r}")
    return int(value)
