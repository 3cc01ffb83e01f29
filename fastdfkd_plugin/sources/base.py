"""The DataSource interface every source implements, and the finite synthetic set.

A source turns a teacher into batches in the model's (normalised) input space:
``next_batch`` for one, ``stream`` for an endless supply (distillation), and
``synthetic_set`` for a finite, seeded, replayable set (calibration). Subclasses
implement one method, :meth:`DataSource.synthesize_pixels`, which returns pixels in
[0, 1] for a given set of labels; everything else (freezing the teacher, balanced
labels, non-finite checks, normalisation, logits, progress, timing) lives here once.
"""

from __future__ import annotations

import copy
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import __version__
from ..devices import resolve_device
from ..errors import FastDFKDError
from ..inputspace import InputSpace
from ..io import save_npz
from ..synthesis.augment import crop_flip
from ..synthesis.objective import InversionObjective, LossWeights
from ..teacher import OutputTransform, frozen, inspect_teacher, model_device, teacher_logits

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


@dataclass
class Batch:
    """One batch: normalised inputs, the labels they were synthesised for, optional teacher logits."""

    inputs: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor | None = None


class NonFiniteBatch(RuntimeError):
    """Raised by a source when an attempt produced NaN/Inf; the batch is redone from fresh latents."""


class DataSource(ABC):
    """A teacher-driven source of input batches; subclasses implement :meth:`synthesize_pixels`."""

    name: ClassVar[str]
    requires_batchnorm: ClassVar[bool] = True

    def __init__(
        self,
        teacher: nn.Module,
        input_shape: Sequence[int],
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: str | torch.device | None = "auto",
        seed: int = 0,
        with_logits: bool = False,
        output_transform: OutputTransform | None = None,
        autocast_dtype: torch.dtype | None = None,
        progress: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.teacher = _on_device(teacher, self.device)
        self.output_transform = output_transform
        self.info = inspect_teacher(
            self.teacher, self.input_shape, self.device, output_transform, require_batchnorm=self.requires_batchnorm
        )
        self.space = InputSpace(self.input_shape[0], mean, std, self.device)
        self.seed = seed
        self.rng = torch.Generator(device=self.device).manual_seed(seed)
        self.with_logits = with_logits
        self.autocast_dtype = autocast_dtype
        self.progress = progress
        self._labels_drawn = 0

    # -- what a subclass implements -------------------------------------------------
    @abstractmethod
    def synthesize_pixels(self, labels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (N×C×H×W) for ``labels``; the teacher is already frozen."""

    def settings(self) -> dict[str, Any]:
        """The source's own settings, recorded in every saved set's metadata."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What the next batches depend on (random state, label cursor); subclasses add their own."""
        return {"rng": self.rng.get_state(), "labels_drawn": self._labels_drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.set_state(state["rng"].cpu())
        self._labels_drawn = state["labels_drawn"]

    # -- the public API ---------------------------------------------------------------
    def next_batch(self, batch_size: int) -> Batch:
        """Synthesise one batch of ``batch_size`` normalised inputs with class-balanced labels."""
        _check_positive("batch_size", batch_size)
        labels = self.balanced_labels(batch_size, self._labels_drawn)
        self._labels_drawn += batch_size
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with frozen(self.teacher):
                try:
                    pixels = self.synthesize_pixels(labels)
                except NonFiniteBatch as exc:
                    log.warning("%s: non-finite values in attempt %d (%s); redoing the batch from fresh latents", self.name, attempt, exc)
                    continue
                if not torch.isfinite(pixels).all():
                    log.warning("%s: non-finite pixels in attempt %d; redoing the batch from fresh latents", self.name, attempt)
                    continue
                inputs = self.space.normalize(pixels.detach())
                logits = self._logits(inputs) if self.with_logits else None
            return Batch(inputs=inputs, labels=labels, logits=logits)
        raise FastDFKDError(
            f"source {self.name!r} produced NaN/Inf {MAX_ATTEMPTS} times in a row; "
            "lower its learning rates or check that the teacher's weights are sane"
        )

    def stream(self, batch_size: int) -> Iterator[Batch]:
        """An endless stream of fresh batches (for distillation)."""
        _check_positive("batch_size", batch_size)
        while True:
            yield self.next_batch(batch_size)

    def synthetic_set(self, num_samples: int, batch_size: int = 64) -> "SyntheticSet":
        """A finite set, materialised once: iterating it replays the same batches every time."""
        _check_positive("num_samples", num_samples)
        _check_positive("batch_size", batch_size)
        started = time.perf_counter()
        batches = []
        with tqdm(total=num_samples, desc=f"{self.name} synthesis", unit="img", disable=not self.progress) as bar:
            for start in range(0, num_samples, batch_size):
                batches.append(self.next_batch(min(batch_size, num_samples - start)))
                bar.update(len(batches[-1].labels))
        seconds = time.perf_counter() - started
        metadata = {
            "source": self.name,
            "settings": self.settings(),
            "seed": self.seed,
            "teacher_fingerprint": self.info.fingerprint,
            "input_shape": list(self.input_shape),
            "mean": self.space.mean_values,
            "std": self.space.std_values,
            "num_samples": num_samples,
            "package_version": __version__,
            "device": str(self.device),
            "seconds": round(seconds, 3),
            "images_per_second": round(num_samples / seconds, 3) if seconds > 0 else None,
        }
        return SyntheticSet(
            inputs=torch.cat([b.inputs for b in batches]),
            labels=torch.cat([b.labels for b in batches]),
            logits=torch.cat([b.logits for b in batches]) if self.with_logits else None,
            batch_size=batch_size,
            metadata=metadata,
        )

    # -- helpers ------------------------------------------------------------------------
    def inversion_objective(self, weights: LossWeights | None, bn_momentum: float) -> InversionObjective:
        """The BN + CE (+ adversarial) loss on crop+flipped batches, for sources that invert the teacher."""
        return InversionObjective(
            self.teacher, self.space.normalize, self.rng, weights, bn_momentum, crop_flip,
            self.output_transform, self.autocast_dtype,
        )

    def balanced_labels(self, batch_size: int, offset: int) -> torch.Tensor:
        """Labels ``offset, offset+1, …`` modulo the class count, shuffled: balanced across batches."""
        labels = (torch.arange(batch_size, device=self.device) + offset) % self.info.num_classes
        order = torch.randperm(batch_size, generator=self.rng, device=self.rng.device).to(self.device)
        return labels[order]

    @torch.no_grad()
    def _logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return teacher_logits(self.teacher(inputs), self.output_transform).float()


@dataclass
class SyntheticSet:
    """A materialised set of synthetic inputs; iterating yields the same batches each time."""

    inputs: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor | None
    batch_size: int
    metadata: dict[str, Any]

    def __len__(self) -> int:
        """Number of batches."""
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, len(self.labels), self.batch_size):
            end = start + self.batch_size
            logits = self.logits[start:end] if self.logits is not None else None
            yield Batch(self.inputs[start:end], self.labels[start:end], logits)

    def save(self, path: str) -> None:
        """Write ``inputs``, ``labels`` and ``metadata`` to ``path`` (.npz), atomically."""
        save_npz(path, self.inputs.cpu().numpy(), self.labels.cpu().numpy(), self.metadata)


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value <= 0:
        raise FastDFKDError(f"{name} must be a positive integer, got {value!r}")


def _on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The teacher itself if it already lives on ``device``, else a copy there (never move the user's model)."""
    if model_device(model) == device:
        return model
    return copy.deepcopy(model).to(device)
