"""The DataSource interface every source implements, and the finite synthetic set.

A source turns a :class:`~fastdfkd_plugin.teacher.teacher.Teacher` (built once by the caller,
usually :func:`~fastdfkd_plugin.sources.registry.get_source`) into batches in the model's
(normalised) input space: ``next_batch`` for one, ``stream`` for an endless
supply (distillation), and ``synthetic_set`` for a finite, seeded, replayable set
(calibration). Subclasses implement one method, :meth:`DataSource.synthesize_pixels`,
which returns pixels in [0, 1] for a given batch of targets (what the teacher's task draws:
balanced classes for class outputs); everything else (freezing the teacher, targets,
non-finite checks, normalisation, the teacher's outputs, progress, timing) lives here once. What only some sources can do (aim an adversarial term at a
student, save a warm state, share it across processes) are methods with harmless
defaults, so callers never probe for attributes. A source's constructor options are its
keyword arguments; :attr:`DataSource.options` says which of them the command line sets.
"""

from __future__ import annotations

import inspect
import logging
import math
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, NamedTuple

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..errors import FastDFKDError
from ..runtime.devices import check_fits
from ..runtime.io import save_npz
from ..runtime.memory import release_freed_memory
from ..teacher.inputspace import InputSpace
from ..teacher.tasks import Outputs, cat_outputs, output_leaves, slice_outputs
from ..teacher.teacher import OutputTransform, Teacher
from ..version import __version__

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


class Batch(NamedTuple):
    """One batch, which unpacks like a loader's: ``inputs, labels, logits = batch``.

    From :meth:`DataSource.next_batch`, ``labels`` are the targets the inputs were
    synthesised for (classes for class outputs) and ``logits`` the teacher's outputs
    (``None`` unless the source was built ``with_logits=True``); from
    :meth:`SyntheticSet.batches`, ``labels`` are the teacher's own labels (its task's:
    classes, class maps, or its outputs) and ``logits`` are always there.
    """

    inputs: torch.Tensor
    labels: Outputs
    logits: Outputs | None = None


class NonFiniteBatch(RuntimeError):
    """Raised by a source when an attempt produced NaN/Inf; the batch is redone from fresh latents."""


@dataclass(frozen=True)
class SourceOption:
    """A constructor option of a source as the command line sets it (``--source NAME`` adds it to a command).

    ``flags`` are its spellings and ``keyword`` the constructor option it sets; ``type``
    parses its value, or, with ``const``, it is a switch that sets ``keyword`` to ``const``
    (``--no-flip`` sets ``flip=False``). Left out, the option keeps the source's default.
    """

    flags: tuple[str, ...]
    keyword: str
    help: str
    type: Callable[[str], Any] = str
    const: Any = None


class DataSource(ABC):
    """A teacher-driven source of input batches; subclasses implement :meth:`synthesize_pixels`."""

    name: ClassVar[str]
    options: ClassVar[tuple[SourceOption, ...]] = ()

    def __init__(
        self,
        teacher: Teacher,
        *,
        seed: int = 0,
        with_logits: bool = False,
        autocast_dtype: torch.dtype | None = None,
        progress: bool = False,
    ) -> None:
        if not isinstance(teacher, Teacher):
            raise FastDFKDError(f"a source is built for a Teacher, not a {type(teacher).__name__}; use "
                                f"get_source({self.name!r}, model, input_shape, mean=..., std=...) or pass Teacher(model, input_shape, ...)")
        self.teacher = teacher
        self.seed = seed
        self.rng = torch.Generator(device=self.device).manual_seed(seed)
        self.with_logits = with_logits
        self.autocast_dtype = autocast_dtype
        self.progress = progress
        self._labels_drawn = 0

    @property
    def device(self) -> torch.device:
        return self.teacher.device

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.teacher.input_shape

    @property
    def space(self) -> InputSpace:
        return self.teacher.space

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """The keyword options the constructor takes: its own and those of every base it passes ``**common`` to."""
        names: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            parameters = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[2:]  # self, teacher
            required = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
            if required:
                raise FastDFKDError(f"source {cls.name!r} takes {', '.join(required)} after the teacher, as sources before 0.2 "
                                    "took input_shape; a source now gets only a Teacher, which holds it: update the plugin")
            names.update(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
            if not any(p.kind is p.VAR_KEYWORD for p in parameters):
                break
        return frozenset(names)

    # -- what a subclass implements -------------------------------------------------
    @abstractmethod
    def synthesize_pixels(self, labels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (N×C×H×W) for ``labels`` (the task's targets, one per image); the teacher is already frozen."""

    def settings(self) -> dict[str, Any]:
        """The source's own settings, recorded in every saved set's metadata (keys ending ``_seconds`` are timings)."""
        return {}

    def run_settings(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote its checkpoint: name, normalisation, settings.

        Not the seed: the random state itself is in the checkpoint, and each torchrun process has its own.
        """
        settings = {key: value for key, value in self.settings().items() if not key.endswith("_seconds")}
        return {"source": self.name, "mean": self.space.mean_values, "std": self.space.std_values, **settings}

    def state_dict(self) -> dict[str, Any]:
        """What the next batches depend on (random state, label cursor); subclasses add their own."""
        return {"rng": self.rng.get_state(), "labels_drawn": self._labels_drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.set_state(state["rng"].cpu())
        self._labels_drawn = state["labels_drawn"]

    # -- what some sources can do; the defaults say what the others do instead ------------
    def set_student(self, student: nn.Module | None, output_transform: OutputTransform | None = None) -> None:
        """Aim the source's adversarial term at ``student`` (``None``: off). Sources without one ignore it."""

    def save_state(self, path: str | Path) -> None:
        """Save what a later source for the same teacher can start from (e.g. a warm generator)."""
        raise FastDFKDError(f"source {self.name!r} has no generator state to save; drop --save-generator-state")

    def share_across_processes(self) -> dict[str, nn.Module]:
        """Under torchrun: make the state every process must hold alike identical, and return it by name.

        Called once after the process group is up; the distillation loop checks the
        returned modules for agreement at the end. A source whose batches depend only
        on its own seed shares nothing.
        """
        return {}

    def probe_step(self, batch_size: int) -> None:
        """Do what one synthesis step does at ``batch_size``, leaving the source as it was, so a memory plan can measure it.

        The default is one forward of the teacher (what sources that only draw inputs cost).
        """
        with self.teacher.frozen():
            self.teacher.predict(self.space.normalize(probe_pixels(batch_size, self.input_shape, self.device)))

    def limit_batch(self, largest: int) -> None:
        """Keep any batches the source makes of its own accord (a warm-up's) within ``largest``, which memory allows."""

    def reseed(self, seed: int) -> None:
        """Restart the source's random stream from ``seed`` (a process of a multi-process run takes its own)."""
        self.rng.manual_seed(seed)

    # -- the public API ---------------------------------------------------------------
    def next_batch(self, batch_size: int) -> Batch:
        """Synthesise one batch of ``batch_size`` normalised inputs for the task's targets (balanced classes for class outputs)."""
        check_positive("batch_size", batch_size)
        labels = self.draw_targets(batch_size, self._labels_drawn)
        self._labels_drawn += batch_size
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with self.teacher.frozen():
                try:
                    pixels = self.synthesize_pixels(labels)
                except NonFiniteBatch as exc:
                    log.warning("%s: non-finite values in attempt %d (%s); redoing the batch from fresh latents", self.name, attempt, exc)
                    continue
                if not torch.isfinite(pixels).all():
                    log.warning("%s: non-finite pixels in attempt %d; redoing the batch from fresh latents", self.name, attempt)
                    continue
                inputs = self.space.normalize(pixels.detach())
                logits = self.teacher.predict(inputs) if self.with_logits else None
            return Batch(inputs=inputs, labels=labels, logits=logits)
        raise FastDFKDError(
            f"source {self.name!r} produced NaN/Inf {MAX_ATTEMPTS} times in a row; "
            "lower its learning rates or check that the teacher's weights are sane"
        )

    def stream(self, batch_size: int) -> Iterator[Batch]:
        """An endless stream of fresh batches (for distillation)."""
        check_positive("batch_size", batch_size)
        while True:
            yield self.next_batch(batch_size)

    def synthetic_set(self, num_samples: int, batch_size: int = 64) -> "SyntheticSet":
        """A finite set, materialised once: a ``Dataset`` of ``(input, label)`` pairs that replays the same samples.

        ``batch_size`` is the synthesis batch (and the default of :meth:`SyntheticSet.batches`).
        The teacher's outputs are always attached; its task's labels (top-1 class, class map) are each sample's label.
        """
        check_positive("num_samples", num_samples)
        check_positive("batch_size", batch_size)
        check_fits(self.set_bytes(num_samples), self.device, f"a set of {num_samples} {self.input_shape} inputs",
                   "lower num_samples (for ONNX Runtime, quantize-onnx streams large sets to disk)")
        started = time.perf_counter()
        inputs, targets, logits = [], [], []
        with tqdm(total=num_samples, desc=f"{self.name} synthesis", unit="img", disable=None if self.progress else True) as bar:
            for start in range(0, num_samples, batch_size):
                batch = self.next_batch(min(batch_size, num_samples - start))
                inputs.append(batch.inputs)
                targets.append(batch.labels)
                logits.append(batch.logits if batch.logits is not None else self.teacher.predict(batch.inputs))
                bar.update(len(batch.labels))
        seconds = time.perf_counter() - started
        metadata = {
            "source": self.name,
            "settings": self.settings(),
            "seed": self.seed,
            "teacher_fingerprint": self.teacher.info.fingerprint,
            "input_shape": list(self.input_shape),
            "mean": self.space.mean_values,
            "std": self.space.std_values,
            "num_samples": num_samples,
            "package_version": __version__,
            "device": str(self.device),
            "seconds": round(seconds, 3),
            "images_per_second": round(num_samples / seconds, 3) if seconds > 0 else None,
        }
        synthetic = SyntheticSet(torch.cat(inputs), torch.cat(targets), cat_outputs(logits), batch_size, metadata,
                                 self.teacher.task.labels)
        del inputs, targets, logits
        # The heap synthesis kept for reuse (runtime/memory.py) goes back to the kernel, so that what runs next does
        # not grow beside it: PP-OCRv4's detector's closing estimate reached 11.9 GiB against an 11.4 GiB budget that way.
        release_freed_memory()
        return synthetic

    def set_bytes(self, num_samples: int) -> int:
        """Memory (or disk) a set of ``num_samples`` takes: float32 inputs, int64 targets, the task's outputs and labels."""
        per_sample = 4 * math.prod(self.input_shape) + 8 + self.teacher.task.sample_bytes
        return num_samples * per_sample

    # -- helpers ------------------------------------------------------------------------
    def draw_targets(self, batch_size: int, offset: int) -> torch.Tensor:
        """The task's targets for images ``offset, offset+1, …`` (for class outputs, classes balanced across batches)."""
        return self.teacher.task.targets(batch_size, offset, self.rng, self.device)


class SyntheticSet(Dataset):
    """A materialised synthetic set: a map-style ``Dataset`` of ``(input, label)`` samples.

    ``label`` is the teacher's label for the input (its task's: top-1 class, class map,
    or the outputs themselves; what a training loop should fit); ``targets`` keeps what
    each input was synthesised for and ``logits`` the teacher's outputs. ``len()`` counts samples, so it works with ``DataLoader(set,
    batch_size=..., shuffle=...)`` and any sampler; :meth:`batches` replays the set in
    its synthesis order as :class:`Batch` tuples.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, logits: Outputs, batch_size: int,
                 metadata: dict[str, Any], labels_of: Callable[[Outputs], Outputs]) -> None:
        self.inputs, self.targets, self.logits = inputs, targets, logits
        self.labels = labels_of(logits)
        self.batch_size, self.metadata = batch_size, metadata

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Outputs]:
        return self.inputs[index], slice_outputs(self.labels, index)

    def batches(self, batch_size: int | None = None) -> Iterator[Batch]:
        """The set in order, ``batch_size`` samples at a time (default: the synthesis batch size)."""
        size = batch_size or self.batch_size
        check_positive("batch_size", size)
        for start in range(0, len(self), size):
            end = start + size
            yield Batch(self.inputs[start:end], slice_outputs(self.labels, slice(start, end)),
                        slice_outputs(self.logits, slice(start, end)))

    def save(self, path: str) -> None:
        """Write ``inputs``, ``labels`` (the teacher's classes or class maps), ``targets`` and ``metadata`` to ``path``
        (.npz), atomically; for generic outputs, ``outputs_0``, ``outputs_1``, … (the teacher's outputs, flattened in order)
        take the place of ``labels``."""
        if isinstance(self.labels, torch.Tensor) and not self.labels.is_floating_point():
            labels, outputs = self.labels.cpu().numpy(), {}
        else:
            labels, outputs = None, {f"outputs_{i}": leaf.cpu().numpy() for i, leaf in enumerate(output_leaves(self.logits))}
        save_npz(path, self.inputs.cpu().numpy(), labels, self.metadata, targets=self.targets.cpu().numpy(), **outputs)


def probe_pixels(batch_size: int, input_shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Random pixels for measuring a step, from a stream of their own: neither the source's nor torch's global one moves."""
    return torch.rand((batch_size, *input_shape), generator=torch.Generator(device).manual_seed(0), device=device)


def announce(message: str, progress: bool) -> None:
    """A line for the log and, when progress is shown, for the person watching (stderr, beside the progress bars)."""
    log.info(message)
    if progress:
        tqdm.write(message, file=sys.stderr)


def check_positive(name: str, value: int) -> None:
    """One sentence for a size that must be a positive integer (batch sizes, sample and step counts)."""
    if not isinstance(value, int) or value <= 0:
        raise FastDFKDError(f"{name} must be a positive integer, got {value!r}")
