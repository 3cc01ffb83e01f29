"""A memory plan before the work: batch sizes that keep a whole command within a budget, from probes at small batches.

PP-OCRv4's 10 MB recognizer got a 24 GiB machine's process killed: synthesis at 64
images held 7–14 GiB, and ONNX Runtime's calibration, which keeps every intermediate
tensor of a batch, about 0.4 GiB per input more. So before any work, :func:`plan_memory`

1. runs the source's own synthesis step (:meth:`~.base.DataSource.probe_step`) at 1 and 3
   inputs and reads how far memory rose (:func:`~..runtime.memory_meter.peak_bytes`): a
   fixed part and a part per input;
2. counts the bytes of every intermediate tensor of one teacher forward per input, which
   bounds what a calibration that keeps them all holds (ONNX Runtime held 0.7–2× that
   count per input on ResNet-20 and PaddleOCR's classifier and recognizer);
3. picks the largest batches within the budget (by default half of the memory there is:
   what is available plus what the process already holds), never larger than asked.

Where the batch asked for fits, nothing changes (seeded sets stay bit-identical). Work
that does not fit even at one input is refused before it starts, with the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from ..errors import FastDFKDError
from ..runtime.devices import available_memory
from ..runtime.memory import release_freed_memory
from ..runtime.memory_meter import AllocatedBytes, baseline, can_measure_peak, peak_bytes
from .base import DataSource, announce, probe_pixels

DEFAULT_SHARE = 0.5  # of the memory there is, when no budget is given
PROBE_BATCHES = (1, 3)
# What ONNX Runtime's calibration holds per input, as a multiple of the teacher's forward intermediates per input:
# measured 0.9× on ResNet-20, 0.7× on PaddleOCR's classifier, 2.0× on its recognizer (MinMax, batches of 8–256); with a margin.
CALIBRATION_FACTOR = 2.5
GIB = 2**30


@dataclass(frozen=True)
class MemoryPlan:
    """Batch sizes within ``budget`` bytes (the process's whole footprint), and the estimates they rest on."""

    budget: int
    budget_origin: str
    held: int  # what the process held when planning (teacher, libraries)
    requested_batch: int
    synthesis_batch: int
    largest_batch: int  # the largest synthesis batch the budget allows (a warm-up's or a held-out set's may use it)
    synthesis_fixed: int  # peak rise of one synthesis step: this plus synthesis_per_input per input
    synthesis_per_input: int
    intermediates_per_input: int  # bytes of all intermediate tensors of one teacher forward per input
    calibration_batch: int | None = None  # inputs per calibration batch (None: no calibration planned)
    calibration_chunk: int | None = None  # at most this many calibration batches at once, for calibrators that keep them all
    synthesises: bool = True  # False: the command synthesises nothing (its calibration set is given), so nothing was probed

    def synthesis_bytes(self, batch: int | None = None) -> int:
        return self.synthesis_fixed + self.synthesis_per_input * (batch or self.synthesis_batch)

    def calibration_bytes(self, batch: int | None = None) -> int:
        return round(CALIBRATION_FACTOR * self.intermediates_per_input * (batch or self.calibration_batch or 0))

    def describe(self) -> str:
        """The plan in one line, as commands print it."""
        changed = f" (asked {self.requested_batch})" if self.synthesis_batch != self.requested_batch else ""
        parts = [f"synthesis batch {self.synthesis_batch}{changed} ≈ +{self.synthesis_bytes() / GIB:.2f} GiB"] if self.synthesises else []
        if self.calibration_batch is not None:
            parts.append(f"calibration batch {self.calibration_batch} ≈ +{self.calibration_bytes() / GIB:.2f} GiB")
        text = (f"memory plan: budget {self.budget / GIB:.1f} GiB ({self.budget_origin}), {self.held / GIB:.1f} GiB held; "
                + "; ".join(parts))
        if self.calibration_chunk is not None:
            text += f", {self.calibration_chunk} batches at a time"
        return text


def memory_budget(device: torch.device, budget: int | None, held: int, share: float = DEFAULT_SHARE) -> tuple[int, str]:
    """(bytes, where that figure comes from): ``budget`` as given, else ``share`` (half) of the memory there is on
    ``device`` (what is free and the ``held`` bytes the process has already)."""
    if budget is not None:
        if budget <= 0:
            raise FastDFKDError(f"the memory budget must be positive, got {budget} bytes; give it like 8G or 512M")
        return budget, "as given"
    free = available_memory(device)
    if free is None:
        raise FastDFKDError("cannot tell how much memory this machine has; give --memory-budget (for example 8G)")
    part = "half" if share == DEFAULT_SHARE else f"{share:.0%}"
    return int(share * (free + held)), f"{part} of the {(free + held) / GIB:.1f} GiB there is"


def intermediates_per_input(source: DataSource) -> int:
    """Bytes of every intermediate tensor one teacher forward makes per input (a batch of 2, halved)."""
    inputs = source.space.normalize(probe_pixels(2, source.input_shape, source.device))
    counter = AllocatedBytes()
    with source.teacher.frozen(), torch.no_grad(), counter:
        source.teacher.model(inputs)
    return counter.total // 2


def plan_memory(source: DataSource, batch_size: int, *, budget: int | None = None, calibration: str | None = None,
                num_samples: int | None = None, resident: int = 0, synthesises: bool = True, progress: bool = False) -> MemoryPlan:
    """Batch sizes for ``source``'s synthesis (at most ``batch_size``) and, if asked, a calibration that follows it.

    ``calibration`` is ``"each batch"`` for a calibration that holds one batch's intermediates at a time (ONNX
    Runtime's MinMax) or ``"every batch"`` for one that keeps them all until it is done (its histogram methods),
    which then gets chunks of ``calibration_chunk`` batches of the ``num_samples`` inputs. ``resident`` is what
    stays in memory throughout (the synthetic set). The source's own larger batches (a warm-up's) are limited too.
    ``synthesises=False`` (a command that synthesises nothing: its calibration set is given) plans the calibration alone,
    without probing a synthesis step it will never take.
    The plan's line goes to the log, and with ``progress`` to stderr.
    """
    device = source.device
    if not can_measure_peak(device):
        raise FastDFKDError("cannot measure memory on this platform, so no memory plan can be made; "
                            "pass --no-memory-plan and choose --batch-size yourself")
    release_freed_memory()
    start = baseline(device)
    budget, origin = memory_budget(device, budget, start)
    fixed, per_input = synthesis_bytes(source, start) if synthesises else (0, 0)
    intermediates = intermediates_per_input(source) if calibration else 0
    held = baseline(device)  # what the probes left held counts against the budget too
    room = budget - held - resident
    fits = int((room - fixed) // per_input) if synthesises else batch_size
    if fits < 1:
        raise FastDFKDError(f"synthesis for this teacher at input shape {source.input_shape} needs about "
                            f"{(held + resident + fixed + per_input) / GIB:.1f} GiB even one input at a time, "
                            f"more than the memory budget of {budget / GIB:.1f} GiB ({origin}); raise --memory-budget, "
                            "free memory, or lower --num-samples")
    source.limit_batch(fits)
    plan = MemoryPlan(budget, origin, held, batch_size, min(batch_size, fits), fits, fixed, per_input, intermediates,
                      synthesises=synthesises)
    if calibration is not None:
        plan = _with_calibration(plan, calibration, room, num_samples or batch_size)
    announce(f"fastdfkd: {plan.describe()}", progress)
    return plan


def synthesis_bytes(source: DataSource, start: int) -> tuple[int, int]:
    """(fixed, per input) bytes of one synthesis step of ``source``, from probe steps at 1 and 3 inputs counted from ``start``."""
    return probed_bytes(source.probe_step, source.device, start)


def probed_bytes(step: Callable[[int], None], device: torch.device, start: int) -> tuple[int, int]:
    """(fixed, per input) bytes of ``step(batch)``, from its peaks at 1 and 3 inputs counted from ``start``; the part
    per input is at least half the larger peak's share, so that a probe that reused freed memory is not believed."""
    small, large = PROBE_BATCHES
    peaks = [peak_bytes(lambda b=b: step(b), device, since=start) for b in PROBE_BATCHES]
    per_input = max((peaks[1] - peaks[0]) // (large - small), peaks[1] // (2 * large), 1)
    return max(peaks[0] - per_input * small, 0), per_input


def _with_calibration(plan: MemoryPlan, calibration: str, room: int, num_samples: int) -> MemoryPlan:
    if calibration not in ("each batch", "every batch"):
        raise FastDFKDError(f"calibration is 'each batch' or 'every batch', got {calibration!r}")
    if plan.calibration_bytes(batch=1) > room:
        raise FastDFKDError(f"calibrating this model needs about {plan.calibration_bytes(batch=1) / GIB:.1f} GiB even one "
                            f"input at a time, more than the {room / GIB:.1f} GiB the memory budget leaves; raise "
                            "--memory-budget or free memory")
    batch = int(min(plan.synthesis_batch, room // plan.calibration_bytes(batch=1)))
    chunk = None
    if calibration == "every batch":
        total = -(-num_samples // batch)
        batches_held = room // plan.calibration_bytes(batch=batch)
        chunk = int(batches_held) if batches_held < total else None
    return replace(plan, calibration_batch=batch, calibration_chunk=chunk)
