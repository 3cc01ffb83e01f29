"""Timing synthesis against what the teacher alone costs: seconds per call, the teacher-bound floor, the generator's share.

Every synthesis step runs the teacher forward and backward, so one teacher
forward+backward per image is the floor no source can beat; the speed benchmarks
report their costs as multiples of it. The teacher is measured, never changed: it is
frozen (eval mode, no weight gradients) while timed.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import nn

from fastdfkd_plugin import DataSource, Teacher


def seconds_per_call(fn: Callable[[], Any], device: torch.device, repeats: int = 3, warm: bool = True) -> float:
    """Mean wall-clock seconds of ``fn()`` over ``repeats`` calls (CUDA synchronised), after one warming call if ``warm``."""
    if warm:
        fn()  # warm the allocator and kernels
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / repeats


def floor_seconds_per_image(teacher: Teacher, batch_size: int, model: nn.Module | None = None) -> float:
    """One teacher forward+backward (gradient to the inputs only), per image, with the teacher frozen.

    ``model``: the teacher's own model in another form (e.g. ``torch.compile``'s wrapper) to time instead.
    """
    x = torch.randn(batch_size, *teacher.input_shape, device=teacher.device)
    timed = teacher.model if model is None else model

    def step() -> None:
        inputs = x.clone().requires_grad_()
        timed(inputs).sum().backward()

    with teacher.frozen():
        return seconds_per_call(step, teacher.device) / batch_size


class TeacherFreeObjective:
    """Stands in for the inversion loss, so timing a task measures everything but the teacher."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, pixels: torch.Tensor, labels: torch.Tensor, adversarial: bool = True) -> torch.Tensor:
        return pixels.mean()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def generator_seconds_per_task(source: DataSource, batch_size: int, tasks: int = 2) -> float:
    """Seconds per fastdfkd task spent on the generator: its forward/backward, optimisers and cloning.

    The source's objective is replaced for good: time the rest of its work first.
    """
    synthesizer = source.synthesizer
    synthesizer.objective = TeacherFreeObjective(synthesizer.objective)
    labels = source.draw_targets(batch_size, 0)
    return seconds_per_call(lambda: synthesizer.task(labels), source.device, repeats=tasks)
