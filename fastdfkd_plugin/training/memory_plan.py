"""The memory plan of a distillation: synthesis batch, KD step and image bank within one budget.

``fastdfkd distill`` and ``prune`` took ``--memory-budget`` and then ignored it, and their image
bank grows with every new batch: 8,192 images of 3×224×224 are 4.6 GiB, and a checkpoint copies
them once the bank has wrapped round. So before the first step,
:func:`plan_distillation`

1. probes the source's synthesis step (as :func:`~fastdfkd_plugin.sources.memory_plan.plan_memory`
   does) and one KD step (teacher forward, student forward and backward) at 1 and 3 inputs,
   leaving the student, its BatchNorm averages and every random stream as they were;
2. lowers the synthesis batch to what fits beside a bank of 8 KD batches (or the bank asked
   for, if smaller): a 51-image bank beside the largest synthesis batch was the first plan's
   answer at 224 px, and KD on it would see the same images over and over. The adversarial
   term runs the student forward and backward on the synthesis batch too, so that is counted;
3. refuses a KD batch that does not fit, before any work: a smaller one would change the
   training, so the sentence gives the estimate and the batch that would fit;
4. caps the bank at what the budget leaves beside the larger of the two steps, and twice over
   beside a synthesis batch (a checkpoint's copy).

Where everything asked for fits, nothing changes (seeded runs stay bit-identical). A resumed
run keeps the synthesis batch and bank its checkpoint was made with (only checked to fit), so
a plan that comes out differently on a busier machine cannot refuse the resume.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import FastDFKDError
from ..runtime import distributed
from ..runtime.memory import release_freed_memory
from ..runtime.memory_meter import baseline, can_measure_peak
from ..sources.base import DataSource, announce, probe_pixels
from ..sources.memory_plan import DEFAULT_SHARE, GIB, memory_budget, probed_bytes, synthesis_bytes
from ..teacher.teacher import OutputTransform, Teacher, outputs_of
from .config import DistillConfig

PLANNED = ("synthesis_batch_size", "bank_size")  # the settings a plan may lower, which a resumed run takes from its checkpoint
BANK_FLOOR_BATCHES = 8  # KD batches of images the bank keeps room for before the synthesis batch takes the rest


@dataclass(frozen=True)
class DistillationPlan:
    """The planned settings (``config``) and the estimates they rest on, all in bytes."""

    config: DistillConfig
    requested: DistillConfig
    budget: int
    budget_origin: str
    held: int  # the process when planning: teacher, student, libraries
    resident: int  # what stays besides the bank: the optimiser's momentum, held-out images
    synthesis_fixed: int
    synthesis_per_input: int  # the source's step and the student's part in it (the adversarial term)
    kd_fixed: int
    kd_per_input: int
    image_bytes: int

    @property
    def synthesis_batch(self) -> int:
        return self.config.synthesis_batch_size or self.config.batch_size

    def synthesis_bytes(self) -> int:
        return self.synthesis_fixed + self.synthesis_per_input * self.synthesis_batch

    def kd_bytes(self) -> int:
        return self.kd_fixed + self.kd_per_input * self.config.batch_size

    def bank_bytes(self) -> int:
        return self.config.bank_size * self.image_bytes

    def largest_forward(self) -> int:
        """The most inputs one student forward may take at once beside what stays (BatchNorm re-estimation over a
        pruning's 512 images at once took 3.2 GiB at 224 px); bounded by a KD step's bytes per input."""
        return int(max((_room(self) - self.kd_fixed) // self.kd_per_input, 1))

    def describe(self) -> str:
        """The plan in one line, as the commands print it."""
        def asked(name: str) -> str:
            mine, theirs = getattr(self.config, name), getattr(self.requested, name) or self.requested.batch_size
            return f" (asked {theirs})" if mine != theirs else ""

        return (f"memory plan: budget {self.budget / GIB:.1f} GiB ({self.budget_origin}), {self.held / GIB:.1f} GiB held; "
                f"synthesis batch {self.synthesis_batch}{asked('synthesis_batch_size')} ≈ +{self.synthesis_bytes() / GIB:.2f} GiB; "
                f"KD batch {self.config.batch_size} ≈ +{self.kd_bytes() / GIB:.2f} GiB; "
                f"bank {self.config.bank_size} images{asked('bank_size')} ≈ +{self.bank_bytes() / GIB:.2f} GiB")


def plan_distillation(source: DataSource, student: nn.Module, config: DistillConfig, *, budget: int | None = None,
                      held_out: int = 0, saved_settings: dict[str, Any] | None = None,
                      student_output_transform: OutputTransform | None = None, progress: bool = False) -> DistillationPlan:
    """Settings for distilling ``student`` from ``source`` (its teacher) that keep the process within ``budget`` bytes
    (default: half of the memory there is, shared among the processes of a multi-process CPU run).

    ``held_out`` images are synthesised and kept for evaluation; ``saved_settings`` are a resumed checkpoint's,
    whose synthesis batch and bank are kept. The plan's line goes to the log, and with ``progress`` to stderr.
    """
    teacher, device = source.teacher, source.device
    if not can_measure_peak(device):
        raise FastDFKDError("cannot measure memory on this platform, so no memory plan can be made; "
                            "pass --no-memory-plan and choose the batch sizes yourself")
    release_freed_memory()
    start = baseline(device)
    processes = torch.distributed.get_world_size() if distributed.active() and device.type == "cpu" else 1
    budget, origin = memory_budget(device, budget, start, share=DEFAULT_SHARE / processes)
    synthesis_fixed, synthesis_per_input = synthesis_bytes(source, start)
    kd_fixed, kd_per_input = kd_step_bytes(teacher, student, start, student_output_transform)
    held = baseline(device)
    image_bytes = 4 * math.prod(teacher.input_shape)  # float32, as the bank keeps them
    momentum = sum(param.numel() * param.element_size() for param in student.parameters() if param.requires_grad)
    resident = momentum + held_out * image_bytes
    plan = DistillationPlan(config, config, budget, origin, held, resident, synthesis_fixed, synthesis_per_input + kd_per_input,
                            kd_fixed, kd_per_input, image_bytes)
    resumed = saved_settings is not None
    if resumed:
        plan = dataclasses.replace(plan, config=_kept(config, saved_settings))
    _check_fits(plan, resumed)
    if not resumed:
        plan = dataclasses.replace(plan, config=_fitted(plan))
    source.limit_batch(max(plan.synthesis_batch, _largest_synthesis_batch(plan)))
    announce(f"fastdfkd: {plan.describe()}", progress)
    return plan


def kd_step_bytes(teacher: Teacher, student: nn.Module, start: int,
                  student_output_transform: OutputTransform | None = None) -> tuple[int, int]:
    """(fixed, per input) bytes of one KD step, from steps at 1 and 3 inputs counted from ``start``; the student's
    BatchNorm averages, gradients, mode and every random stream are as they were after."""
    device = teacher.device
    buffers = {name: buffer.clone() for name, buffer in student.named_buffers()}
    was_training = student.training

    def step(batch: int) -> None:
        inputs = teacher.space.normalize(probe_pixels(batch, teacher.input_shape, device))
        with torch.no_grad():
            target = teacher.outputs(inputs)
        loss = teacher.task.kd_loss(outputs_of(student(inputs), student_output_transform), target, 1.0)
        loss.backward()

    try:
        with teacher.frozen(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            student.train()
            return probed_bytes(step, device, start)
    finally:
        student.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buffer in student.named_buffers():
                buffer.copy_(buffers[name])
        student.train(was_training)


def _room(plan: DistillationPlan) -> int:
    return plan.budget - plan.held - plan.resident


def _bank_floor(config: DistillConfig) -> int:
    """Images the bank keeps room for before the synthesis batch takes the rest: KD minibatches drawn from a bank
    not much larger than one would see the same images again and again."""
    return min(config.bank_size, BANK_FLOOR_BATCHES * config.batch_size)


def _largest_synthesis_batch(plan: DistillationPlan) -> int:
    """The largest synthesis batch that fits beside the bank's floor (a warm-up's batches are kept within it too)."""
    floor = _bank_floor(plan.requested) * plan.image_bytes
    return int(max((_room(plan) - plan.synthesis_fixed - floor) // plan.synthesis_per_input, 1))


def _fitted(plan: DistillationPlan) -> DistillConfig:
    """The largest synthesis batch (at most the one asked for) beside the bank's floor, then the largest bank (at most
    the one asked for) beside the larger step, or held twice while a checkpoint copies it."""
    config = plan.config
    synthesis = min(config.synthesis_batch_size or config.batch_size, _largest_synthesis_batch(plan))
    planned = dataclasses.replace(plan, config=dataclasses.replace(config, synthesis_batch_size=synthesis))
    step, room = max(planned.synthesis_bytes(), planned.kd_bytes()), _room(plan)
    bank = min((room - step) // plan.image_bytes, (room - synthesis * plan.image_bytes) // (2 * plan.image_bytes))
    return dataclasses.replace(planned.config, bank_size=int(min(config.bank_size, max(bank, 1))))


def _kept(config: DistillConfig, saved: dict[str, Any]) -> DistillConfig:
    """``config`` with the checkpoint's planned settings where a plan lowered them (at most what is asked now)."""
    kept = {name: saved[name] for name in PLANNED
            if isinstance(saved.get(name), int) and saved[name] <= (getattr(config, name) or config.batch_size)}
    return dataclasses.replace(config, **kept)


def _check_fits(plan: DistillationPlan, resumed: bool) -> None:
    """One sentence with the estimate and what to change, for work that the budget cannot hold: the settings asked for
    (the synthesis batch at one input, as a plan can lower it), or a resumed checkpoint's as they are."""
    room, config = _room(plan), plan.config
    floor = _bank_floor(config) * plan.image_bytes
    fixed = f"{plan.held / GIB:.1f} GiB held and {plan.resident / GIB:.1f} GiB kept throughout"
    budget = f"the memory budget of {plan.budget / GIB:.1f} GiB ({plan.budget_origin})"
    synthesis = plan.synthesis_bytes() if resumed else plan.synthesis_fixed + plan.synthesis_per_input
    if synthesis + floor > room:
        what = (f"its checkpoint's synthesis batch of {plan.synthesis_batch}" if resumed
                else "synthesis for this teacher and student even one input at a time")
        raise FastDFKDError(f"{what}, with a bank of {_bank_floor(config)} images, needs about "
                            f"{(synthesis + floor) / GIB:.1f} GiB besides {fixed}, more than {budget} leaves; "
                            "raise --memory-budget, free memory, or lower --bank-size")
    if plan.kd_bytes() + floor > room:
        fits = (room - plan.kd_fixed) // (plan.kd_per_input + BANK_FLOOR_BATCHES * plan.image_bytes)
        change = f"lower --kd-batch-size to {fits} or less" if fits >= 1 else "use a smaller student"
        raise FastDFKDError(f"a KD step at batch {config.batch_size}, with a bank of {_bank_floor(config)} images, needs about "
                            f"{(plan.kd_bytes() + floor) / GIB:.1f} GiB besides {fixed}, more than {budget} leaves; "
                            f"{change}, or raise --memory-budget")
    if resumed and max(plan.synthesis_bytes(), plan.kd_bytes()) + plan.bank_bytes() > room:
        raise FastDFKDError(f"the checkpoint's bank of {config.bank_size} images needs {plan.bank_bytes() / GIB:.1f} GiB beside the "
                            f"steps, more than {budget} leaves; raise --memory-budget or free memory")
