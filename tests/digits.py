"""A small CNN trained on scikit-learn's digits, once per session (about 3 s on one core).

Tests that judge calibration quality need a model whose predictions depend on its
input; the untrained TinyNet predicts one class for everything.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

from fastdfkd_plugin import SyntheticSet, get_source
from fastdfkd_plugin.demo import INPUT_SHAPE, Digits, DigitsNet, load_digits, train_teacher

DIGITS_SHAPE = INPUT_SHAPE


def train_on_digits(make_model: Callable[[], nn.Module], epochs: int) -> tuple[nn.Module, Digits]:
    """(model, digits): ``make_model()`` seeded and trained on the digits for ``epochs``."""
    digits = load_digits()
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the initial weights too, whatever ran before
        model = make_model()
    return train_teacher(digits, epochs=epochs, model=model), digits


@functools.cache
def trained_digits() -> tuple[nn.Module, Digits]:
    """(teacher, digits): a width-8 DigitsNet after 6 epochs, about 88 % on the 500 test digits. Copy before changing it."""
    return train_on_digits(lambda: DigitsNet(8), epochs=6)


@functools.cache
def synthetic_digits(seed: int = 0) -> SyntheticSet:
    """64 fastdfkd images of the trained teacher (two batches of 32, about 5 s). Do not modify.

    Five steps and five warm-up tasks: with the FAST settings' barely trained generator
    the images are dim, and calibration ranges taken from them clip real digits.
    """
    teacher, digits = trained_digits()
    source = get_source("fastdfkd", teacher, DIGITS_SHAPE, mean=[digits.mean], std=[digits.std], steps=5,
                        warmup_tasks=5, latent_dim=32, device="cpu", seed=seed)
    return source.synthetic_set(64, batch_size=32)
