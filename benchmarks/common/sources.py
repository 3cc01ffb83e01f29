"""Data sources as benchmarks build and time them: from cold, timed the same way, with the defaults they report.

A benchmark compares sources by what a set costs from cold, so the ``fastdfkd``
warm-state cache (which would skip the warm-up) is off here unless a benchmark says
otherwise, and every set is timed around ``synthetic_set`` alone.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from torch import nn

from fastdfkd_plugin import DataSource, SyntheticSet, Teacher, calibration_source_options, get_source

from .data import INPUT_SHAPE, MEAN, STD

# The fastdfkd source's own warm-up defaults, which reports quote; tests/test_benchmarks.py checks them
# against a built source's settings().
FASTDFKD_WARMUP_TASKS = 40
FASTDFKD_WARMUP_BATCH_SIZE = 16


def cold_source(name: str, teacher: Teacher | nn.Module, **options: Any) -> DataSource:
    """``get_source`` never starting from the warm-state cache; a bare model is taken at the CIFAR shape and normalisation.

    A benchmark times every ``fastdfkd`` set from cold (warm-up counted); a warm state cached
    by an earlier run or an earlier source in the same run would skip it.
    """
    if name == "fastdfkd":
        options = {"cache": False, **options}
    if isinstance(teacher, Teacher):
        return get_source(name, teacher, **options)
    return get_source(name, teacher, INPUT_SHAPE, mean=MEAN, std=STD, **options)


def timed_set(source: DataSource, samples: int, batch_size: int = 64) -> tuple[SyntheticSet, float]:
    """(a ``samples``-image set of ``source``, the seconds it took): a cold source's first set includes its warm-up."""
    started = time.perf_counter()
    synthetic = source.synthetic_set(samples, batch_size)
    return synthetic, time.perf_counter() - started


def deepinversion_seconds_per_step(teacher: Teacher | nn.Module, batch_size: int, **options: Any) -> float:
    """Seconds one DeepInversion step takes on a batch (five timed), to fit its step count to a time budget."""
    probe = cold_source("deepinversion", teacher, steps=5, **options)
    started = time.perf_counter()
    probe.next_batch(batch_size)
    return (time.perf_counter() - started) / 5



def calibration_sets(source: str, teacher: Teacher, seed: int, samples: int, real: np.ndarray,
                     ) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """Activation bits (4, 8) → the set a column of that width calibrates on, and the seconds each took to make.

    ``source``: ``real`` (the seed's own ``real`` images), ``gaussian`` (N(0, 1) noise) or ``fastdfkd``
    (the set ``quantize-onnx`` synthesises for the width, from cold: ``calibration_source_options``).
    """
    if source == "real":
        return {4: real, 8: real}, {}
    if source == "gaussian":
        noise = cold_source("gaussian", teacher, seed=seed, clip=False).synthetic_set(samples).inputs.numpy()
        return {4: noise, 8: noise}, {}
    sets, seconds = {}, {}
    for bits in (4, 8):
        sets[bits], seconds[bits] = quantize_onnx_set(teacher, seed, samples, bits)
    return sets, {bits: round(value, 1) for bits, value in seconds.items()}


def quantize_onnx_set(teacher: Teacher, seed: int, samples: int, bits: int) -> tuple[np.ndarray, float]:
    """(the set ``quantize-onnx`` synthesises to calibrate ``bits``-bit activations, from cold; the seconds it took)."""
    options = calibration_source_options("fastdfkd", bits, teacher)
    made, seconds = timed_set(cold_source("fastdfkd", teacher, seed=seed, **options), samples)
    return made.inputs.numpy(), seconds
