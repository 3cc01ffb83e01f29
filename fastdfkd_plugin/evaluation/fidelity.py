"""How much of the teacher's accuracy a compressed model keeps, estimated from held-out synthetic images alone.

Users of this package have no data, so nothing else can tell them whether a quantized or
pruned model still works. The teacher can: a *held-out* synthetic set (its own seed, never a
calibration set) is run through both models, and the share of inputs on which the compressed
model agrees with the teacher (the task's :meth:`~fastdfkd_plugin.PredictionTask.sample_agreement`)
is turned into an estimate of the share of the teacher's accuracy it keeps.

Agreement alone ranks compressed variants well but is no estimate: synthetic images sit near
decision boundaries, so a model that keeps 60 % of its accuracy agrees on 40 % of them. The
map from agreement to relative accuracy is linear on the probit scale ("agreement on the
line"); its slope and offset were fitted once on held-out real images of one teacher
(docs/fidelity.md says which and how well it transfers) and hold for every teacher, since a
user cannot fit them without data.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..sources.base import SyntheticSet
from ..sources.registry import get_source
from ..teacher.teacher import OutputTransform, Teacher, model_device, outputs_of
from .metrics import eval_chunk

HELD_OUT_SEED = 0x7E57  # a held-out set for seed s draws its batches from the stream HELD_OUT_SEED + s, never a calibration stream
SELECTION_STREAM = 0x5E1EC7  # added to the held-out stream's seed for the sets searches choose on
HELD_OUT_SAMPLES = 256
HELD_OUT_BATCH = 64  # its synthesis batch, unless a memory plan lowers it
# probit(relative accuracy) = SLOPE · probit(agreement) + OFFSET, fitted on held-out train_10k images of ResNet-20 over 28
# compressed variants (docs/fidelity.md). SPREAD is the compressed models' spread around that line on the probit scale:
# 0.135 on ResNet-20 alone covered 78 % of ResNet-56's held-out estimates; 0.25 (their pooled residuals: 0.22), with
# CEILING, is the smallest that covers 95 % of both teachers' held-out train_10k estimates (97 % and 100 %).
PROBIT_SLOPE, PROBIT_OFFSET, PROBIT_SPREAD = 1.265, 0.822, 0.25
# The interval is at least this many points either side of the estimate: near 100 % the probit spread vanishes, yet
# W8A8 models beat their teacher by up to 0.5 points. The smallest value whose interval covered 95 % of the 69 variant
# estimates on ResNet-20's held-out train_10k split (0.5 covered 94 %; docs/fidelity.md).
MIN_HALF_WIDTH = 0.75
# An interval whose upper end reaches this share reaches past the teacher: the probit scale ends at 100 %, yet W4A8 models
# of ResNet-56 kept 99.6-100.8 % of its accuracy where their intervals ended at 99.2-99.6 %. Chosen on the held-out splits.
CEILING = 99.0
LOW_FIDELITY = 90.0  # below this estimated share of the teacher's accuracy, a command warns


@dataclass(frozen=True)
class Fidelity:
    """A compressed model judged against its teacher on held-out synthetic inputs; every share is a percent."""

    task: str
    samples: int
    agreement: float  # the raw share of held-out inputs (pixels, for class maps) on which the two agree
    estimated_relative_accuracy: float  # the compressed model's accuracy as a share of the teacher's, estimated
    interval: tuple[float, float]  # 95 % interval of that estimate
    seconds: float
    calibrated: bool = True  # False: the task's agreement was never fitted to accuracy, so the estimate means nothing

    def estimated_accuracy(self, teacher_accuracy: float) -> tuple[float, tuple[float, float]]:
        """The absolute estimate (and interval) for a teacher of ``teacher_accuracy`` percent on its own data."""
        scale = teacher_accuracy / 100
        return self.estimated_relative_accuracy * scale, (self.interval[0] * scale, self.interval[1] * scale)

    def summary(self, teacher_accuracy: float | None = None) -> str:
        if not self.calibrated:
            return (f"agrees with the teacher on {self.agreement:.1f} % of {self.samples} held-out synthetic inputs "
                    f"({self.seconds:.1f} s); no estimate of the accuracy kept: it is calibrated for classifiers only, and "
                    f"this teacher's outputs are '{self.task}'")
        low, high = self.interval
        text = (f"estimated to keep {self.estimated_relative_accuracy:.0f} % ({low:.0f}–{high:.0f} %) of the teacher's accuracy "
                f"(agreement {self.agreement:.1f} % on {self.samples} held-out synthetic inputs, {self.seconds:.1f} s)")
        if teacher_accuracy is not None:
            value, (low, high) = self.estimated_accuracy(teacher_accuracy)
            text += f"; with the teacher at {teacher_accuracy:g} %: {value:.1f} % ({low:.1f}–{high:.1f} %)"
        return text

    def warning(self, fix: str) -> str | None:
        """One sentence when the estimate is low, naming ``fix`` (what to try for the command that made the model)."""
        if not self.calibrated or self.estimated_relative_accuracy >= LOW_FIDELITY:
            return None
        return (f"warning: the compressed model is estimated to keep only {self.estimated_relative_accuracy:.0f} % of the "
                f"teacher's accuracy; {fix}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "interval": list(self.interval)}


def held_out_options(source: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The held-out set's source options for a command that synthesised with ``source`` and ``options``: the same where
    that source is ``fastdfkd`` (e.g. fewer warm-up tasks, so its warm generator is the cached one), else the defaults."""
    return dict(options or {}) if source == "fastdfkd" else {}


def held_out_set(teacher: Teacher, num_samples: int = HELD_OUT_SAMPLES, seed: int = 0, progress: bool = False,
                 selection: bool = False, batch_size: int = HELD_OUT_BATCH, **source_options: Any) -> SyntheticSet:
    """The held-out synthetic set fidelity is measured on: the ``fastdfkd`` source (``source_options``, defaults
    otherwise) warmed for ``seed`` (so a command's warm generator is reused from the cache, not warmed again), drawing
    its batches from a stream of their own, so no held-out input is ever a calibration input. ``selection=True`` gives
    a second such set, for searches to choose on, so that a choice is never judged on the inputs that made it.
    ``batch_size`` is the synthesis batch (a memory plan's, for large teachers)."""
    source = get_source("fastdfkd", teacher, seed=seed, progress=progress, **source_options)
    source.limit_batch(batch_size)
    source.reseed(HELD_OUT_SEED + seed + (SELECTION_STREAM if selection else 0))
    return source.synthetic_set(num_samples, batch_size)


def fidelity(teacher: Teacher, model: nn.Module | Callable[[torch.Tensor], Any], *, held_out: SyntheticSet | None = None,
             num_samples: int = HELD_OUT_SAMPLES, seed: int = 0, model_output_transform: OutputTransform | None = None,
             progress: bool = False, source_options: dict[str, Any] | None = None, batch_size: int = HELD_OUT_BATCH) -> Fidelity:
    """How much of ``teacher``'s accuracy ``model`` keeps, estimated on a held-out synthetic set (made unless given).

    ``model`` is a torch module in the mode it will run in (``eval()`` it first; exported programs
    have no modes) or any callable from a batch of normalised inputs to outputs like the teacher's
    (an ONNX Runtime session wrapped by :func:`~.compressed.load_compressed`).
    ``model_output_transform`` picks its outputs (for a compressed copy of a tuple-output teacher,
    pass ``teacher.output_transform``, as :func:`~.metrics.agreement` takes it);
    ``source_options`` and ``batch_size`` go to the held-out set's ``fastdfkd`` source (see :func:`held_out_set`).
    """
    started = time.perf_counter()
    held_out = held_out or held_out_set(teacher, num_samples, seed, progress, batch_size=batch_size, **(source_options or {}))
    device = model_device(model) if isinstance(model, nn.Module) else torch.device("cpu")
    with torch.no_grad():
        shares = torch.cat([teacher.task.sample_agreement(batch.logits,
                                                          outputs_of(model(batch.inputs.to(device)), model_output_transform))
                            for batch in held_out.batches(eval_chunk(teacher.input_shape))])
    estimate, interval = relative_accuracy(shares)
    return Fidelity(teacher.task.name, len(shares), 100 * float(shares.mean()), estimate, interval,
                    round(time.perf_counter() - started, 3), teacher.task.estimates_accuracy)


def relative_accuracy(shares: torch.Tensor) -> tuple[float, tuple[float, float]]:
    """(estimate, 95 % interval), in percent, of the accuracy kept, from per-input agreement ``shares`` (0–1).

    The interval adds the sampling error of the mean agreement (delta method on the probit
    scale) to the spread of compressed models around the fitted line, which dominates it, and
    is never narrower than :data:`MIN_HALF_WIDTH` points either side (above 100 % too: a
    compressed model can beat its teacher); one that reaches :data:`CEILING` reaches that far above 100 %.
    """
    n = len(shares)
    agreement = min(max(float(shares.mean()), 0.5 / n), 1 - 0.5 / n)  # a finite probit for 0 % and 100 %
    variance = float(shares.var()) if n > 1 else 0.0
    if variance == 0:  # all inputs agree, or none: the binomial variance at the clamped agreement
        variance = agreement * (1 - agreement)
    standard_error = (variance / n) ** 0.5
    z = float(torch.special.ndtri(torch.tensor(agreement, dtype=torch.float64)))
    probit_error = standard_error / (math.exp(-z * z / 2) / math.sqrt(2 * math.pi))
    centre = PROBIT_SLOPE * z + PROBIT_OFFSET
    half_width = 1.96 * math.hypot(PROBIT_SLOPE * probit_error, PROBIT_SPREAD)
    estimate = _percent(centre)
    low, high = _percent(centre - half_width), _percent(centre + half_width)
    high = max(high, estimate + MIN_HALF_WIDTH, 100 + MIN_HALF_WIDTH if high >= CEILING else 0.0)
    return estimate, (max(min(low, estimate - MIN_HALF_WIDTH), 0.0), high)


def _percent(probit: float) -> float:
    return 100 * float(torch.special.ndtr(torch.tensor(probit, dtype=torch.float64)))
