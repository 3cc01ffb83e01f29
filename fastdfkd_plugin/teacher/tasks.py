"""What a teacher's output means: the one place that knows it.

A :class:`PredictionTask` is learnt from one probe forward of the teacher (or named with
``task=``, ``--task``) and supplies everything that depends on the kind of output: the
synthesis target term and the adversarial divergence, the KD loss, the teacher's labels
for a synthetic set, agreement with a compressed copy, evaluation scores, and what an
exported graph is compared on. Nothing else in the package branches on output shapes.

Four kinds are built in; a plugin adds others through ``fastdfkd_register_tasks``:

- ``classification``: logits ``N×C`` (``N×C×1×1`` when named);
- ``segmentation``: class maps ``N×C×H×W``, a softmax over C at every pixel;
- ``sequence``: class scores at every position ``N×T×C`` (CTC recognizers, token classifiers);
- ``generic``: any tensor or tuple/dict of tensors (detection heads, depth, embeddings),
  compared element-wise with no class assumption (L1, as DFAD does for dense outputs).

Outputs that are tuples or dicts are handled leaf by leaf with :mod:`torch.utils._pytree`
(:func:`cat_outputs`, :func:`slice_outputs`, :func:`map_outputs`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Iterable

import torch
import torch.nn.functional as F
from torch.utils import _pytree as pytree

from ..errors import FastDFKDError
from ..hooks.manager import registry

Outputs = Any  # a tensor, or a tuple/list/dict of tensors
DEFAULT_IGNORE_INDEX = 255
MATCH_TOLERANCE = 0.05  # generic outputs agree on an input when their relative L1 error is at most this
DISTRIBUTION_TOLERANCE = 0.01  # scores non-negative and summing to 1 within this over the classes are probabilities


def map_outputs(function: Callable[[torch.Tensor], torch.Tensor], outputs: Outputs) -> Outputs:
    """``function`` applied to every tensor of ``outputs``, in the same structure."""
    return pytree.tree_map(lambda leaf: function(leaf) if isinstance(leaf, torch.Tensor) else leaf, outputs)


def cat_outputs(chunks: list[Outputs]) -> Outputs:
    """Chunks of outputs joined along the batch, leaf by leaf."""
    leaves, spec = zip(*(pytree.tree_flatten(chunk) for chunk in chunks))
    return pytree.tree_unflatten([torch.cat(column) for column in zip(*leaves)], spec[0])


def slice_outputs(outputs: Outputs, index: Any) -> Outputs:
    """``outputs[index]`` along the batch, leaf by leaf."""
    return map_outputs(lambda leaf: leaf[index], outputs)


def output_leaves(outputs: Outputs) -> list[torch.Tensor]:
    return [leaf for leaf in pytree.tree_leaves(outputs) if isinstance(leaf, torch.Tensor)]


def describe(outputs: Outputs) -> str:
    """Shapes of ``outputs`` as a user reads them: ``(2, 10)`` or ``tuple of (2, 4, 8, 8), (2, 3)``."""
    if isinstance(outputs, torch.Tensor):
        return str(tuple(outputs.shape))
    shapes = ", ".join(str(tuple(leaf.shape)) for leaf in output_leaves(outputs))
    return f"{type(outputs).__name__} of {shapes or 'no tensors'}"


class PredictionTask(ABC):
    """A kind of teacher output, built from an example output (a probe batch of 2) that it checks.

    ``recognises`` decides automatic detection (the highest ``rank`` that recognises an
    output wins). Every method takes outputs after the teacher's ``output_transform``.
    """

    name: ClassVar[str]
    rank: ClassVar[int] = 0
    default_target_weight: ClassVar[float] = 0.0  # the synthesis target term's weight unless the user sets one
    # Whether agreement on held-out synthetic inputs maps to the accuracy kept through fidelity's fitted line: measured
    # on classifiers only (docs/fidelity.md); for other outputs fidelity reports the agreement without an estimate.
    estimates_accuracy: ClassVar[bool] = False

    def __init__(self, example: Outputs) -> None:
        self.check(example)
        labels = self.labels(example)
        label_bytes = 0 if labels is example else sum(8 * leaf[0].numel() for leaf in output_leaves(labels))
        self.sample_bytes = sum(4 * leaf[0].numel() for leaf in output_leaves(example)) + label_bytes  # float32 outputs, int64 labels

    @classmethod
    def description(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]

    @classmethod
    @abstractmethod
    def recognises(cls, outputs: Outputs) -> bool:
        """Whether automatic detection should pick this task for a teacher with these outputs."""

    @abstractmethod
    def check(self, outputs: Outputs) -> None:
        """Refuse, in one sentence, outputs this task cannot mean."""

    @property
    def num_classes(self) -> int | None:
        """Classes the outputs score (``None`` where they are not class scores)."""
        return None

    # -- synthesis -------------------------------------------------------------------------
    def targets(self, batch_size: int, offset: int, rng: torch.Generator, device: torch.device) -> torch.Tensor:
        """What a synthetic batch is made for (one entry per input): classes ``offset, offset+1, …`` for class tasks."""
        return torch.zeros(batch_size, dtype=torch.long, device=device)

    def target_loss(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        """The synthesis term that pulls outputs towards ``targets``."""
        raise FastDFKDError(f"task {self.name!r} has no synthesis target term; set its weight to 0 (loss_weights=LossWeights(oh=0))")

    @abstractmethod
    def divergence(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        """How far the student is from the teacher on a batch: the adversarial term synthesis maximises."""

    # -- distillation ---------------------------------------------------------------------------
    @abstractmethod
    def kd_loss(self, student: Outputs, teacher: Outputs, temperature: float) -> torch.Tensor:
        """The distillation loss the student minimises."""

    def importance_loss(self, model: Outputs, teacher: Outputs, reduction: str = "mean") -> torch.Tensor:
        """The loss (per sample with ``reduction="none"``) whose gradients score channels for pruning; it must not
        vanish while ``model`` still equals the teacher, as KL to the teacher would."""
        raise FastDFKDError(f"gradient-based pruning importance needs class scores, which task {self.name!r} does not have; "
                            "use --importance magnitude (or lamp, fpgm)")

    # -- labels and comparison ----------------------------------------------------------------
    @abstractmethod
    def labels(self, outputs: Outputs) -> Outputs:
        """What a training loop on a synthetic set fits: the teacher's classes, class maps, or its outputs themselves."""

    @abstractmethod
    def sample_agreement(self, teacher: Outputs, other: Outputs) -> torch.Tensor:
        """Per input, the share (0–1) of it on which ``other`` agrees with the teacher: the same top-1 class, the
        share of pixels with the same class, or whether the outputs match. What agreement and fidelity average."""

    def agreement(self, teacher: Outputs, other: Outputs) -> tuple[float, int]:
        """(agreeing inputs, inputs), an input counting by its :meth:`sample_agreement`."""
        shares = self.sample_agreement(teacher, other)
        return float(shares.sum()), len(shares)

    @abstractmethod
    def scores(self, pairs: Iterable[tuple[Outputs, torch.Tensor]], ignore_index: int = DEFAULT_IGNORE_INDEX) -> dict[str, float]:
        """Quality (%) on labelled data, from ``(outputs, labels)`` chunks."""

    def class_histogram(self, outputs: Outputs) -> list[int] | None:
        """How often each class is the top-1 (images or pixels); ``None`` without classes."""
        return None

    def preview(self, pixels: torch.Tensor, outputs: Outputs) -> torch.Tensor:
        """The images a preview grid shows for ``pixels`` (N×C×H×W in [0, 1]) and the teacher's outputs on them."""
        return pixels


class Classification(PredictionTask):
    """Class logits N×C: top-1 labels, temperature KL, accuracy."""

    name = "classification"
    rank = 20
    default_target_weight = 0.5
    estimates_accuracy = True

    @classmethod
    def recognises(cls, outputs: Outputs) -> bool:
        return isinstance(outputs, torch.Tensor) and outputs.dim() == 2 and outputs.shape[1] >= 2

    def check(self, outputs: Outputs) -> None:
        if not isinstance(outputs, torch.Tensor) or not (outputs.dim() == 2 or outputs.dim() == 4 and outputs.shape[2:] == (1, 1)):
            raise FastDFKDError(f"task 'classification' needs batch×classes logits, but the teacher returns {describe(outputs)}; "
                                "pick the logits with output_transform (--output-index/--output-key) or choose another --task")
        self._classes = int(outputs.shape[1])

    @property
    def num_classes(self) -> int:
        return self._classes

    def targets(self, batch_size: int, offset: int, rng: torch.Generator, device: torch.device) -> torch.Tensor:
        """Classes ``offset, offset+1, …`` modulo the class count, shuffled: balanced across batches."""
        labels = (torch.arange(batch_size, device=device) + offset) % self.num_classes
        order = torch.randperm(batch_size, generator=rng, device=rng.device).to(device)
        return labels[order]

    def target_loss(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.flatten(1), targets)

    def divergence(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        """KL on the inputs where both still pick the same class (the paper's adversarial term)."""
        return _agreeing_kl(student.flatten(1), teacher.flatten(1)).mean()

    def kd_loss(self, student: Outputs, teacher: Outputs, temperature: float) -> torch.Tensor:
        """``KL(p_T^τ ‖ p_S^τ)·τ²``, averaged over the batch."""
        log_p_s = F.log_softmax(student.flatten(1) / temperature, dim=1)
        log_p_t = F.log_softmax(teacher.flatten(1) / temperature, dim=1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2

    def importance_loss(self, model: Outputs, teacher: Outputs, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy to the teacher's top-1 class."""
        return F.cross_entropy(model.flatten(1), teacher.flatten(1).argmax(1), reduction=reduction)

    def labels(self, outputs: Outputs) -> torch.Tensor:
        return outputs.flatten(1).argmax(1)

    def sample_agreement(self, teacher: Outputs, other: Outputs) -> torch.Tensor:
        """Same top-1 class: 0 or 1 per image, the share of pixels per image for class maps."""
        same = self.labels(teacher) == self.labels(other).to(teacher.device)
        return same.float().reshape(len(same), -1).mean(1).cpu()

    def scores(self, pairs: Iterable[tuple[Outputs, torch.Tensor]], ignore_index: int = DEFAULT_IGNORE_INDEX) -> dict[str, float]:
        correct = total = 0
        for outputs, labels in pairs:
            correct += int((self.labels(outputs).cpu() == labels.cpu()).sum())
            total += len(labels)
        return {"accuracy": 100.0 * correct / max(total, 1)}

    def class_histogram(self, outputs: Outputs) -> list[int]:
        return torch.bincount(self.labels(outputs).cpu(), minlength=self.num_classes).tolist()


class Segmentation(Classification):
    """Dense class maps N×C×H×W: a softmax over C at every pixel; per-pixel KL, mIoU."""

    name = "segmentation"
    rank = 10
    estimates_accuracy = False  # per-pixel agreement was never checked against mIoU kept
    default_target_weight = 0.0  # the paper's recipe for segmentation: prior and adversarial terms only

    @classmethod
    def recognises(cls, outputs: Outputs) -> bool:
        if not (isinstance(outputs, torch.Tensor) and outputs.dim() == 4 and outputs.shape[1] >= 2):
            return False
        if outputs.shape[2:] == (1, 1):
            raise FastDFKDError(f"the teacher's output has shape {tuple(outputs.shape)}: class logits or 1×1 class maps? "
                                "say which with task='classification' or task='segmentation' (--task)")
        return True

    def check(self, outputs: Outputs) -> None:
        if not (isinstance(outputs, torch.Tensor) and outputs.dim() == 4):
            raise FastDFKDError(f"task 'segmentation' needs N×classes×H×W class maps, but the teacher returns {describe(outputs)}; "
                                "pick the map with output_transform (--output-index/--output-key) or choose another --task")
        self._classes = int(outputs.shape[1])

    def target_loss(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        """Each image shows its target class somewhere: cross-entropy of the pixel-averaged class probabilities."""
        presence = outputs.float().softmax(1).mean((2, 3))
        return F.nll_loss(presence.clamp_min(1e-8).log(), targets)

    def divergence(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        """Per-pixel KL where both still pick the same class, averaged over pixels."""
        return _agreeing_kl(student, teacher).mean()

    def kd_loss(self, student: Outputs, teacher: Outputs, temperature: float) -> torch.Tensor:
        """Per-pixel ``KL(p_T^τ ‖ p_S^τ)·τ²``, averaged over pixels."""
        return _kl(student, teacher, temperature).sum(1).mean() * temperature**2

    def importance_loss(self, model: Outputs, teacher: Outputs, reduction: str = "mean") -> torch.Tensor:
        """Per-pixel cross-entropy to the teacher's class map."""
        per_sample = F.cross_entropy(model, teacher.argmax(1), reduction="none").mean((1, 2))
        return per_sample if reduction == "none" else per_sample.mean()

    def labels(self, outputs: Outputs) -> torch.Tensor:
        return outputs.argmax(1)

    def scores(self, pairs: Iterable[tuple[Outputs, torch.Tensor]], ignore_index: int = DEFAULT_IGNORE_INDEX) -> dict[str, float]:
        """Mean IoU over the classes present in the labels or the predictions, and pixel accuracy; ``ignore_index`` pixels left out."""
        confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        for outputs, labels in pairs:
            labels = labels.cpu().long()
            predicted = self.labels(outputs).cpu()
            if predicted.shape != labels.shape:
                raise FastDFKDError(f"the label maps are {tuple(labels.shape[1:])} but the model predicts "
                                    f"{tuple(predicted.shape[1:])}; give labels at the model's output size")
            kept = labels != ignore_index
            if (labels[kept] >= self.num_classes).any() or (labels[kept] < 0).any():
                raise FastDFKDError(f"the labels hold classes outside 0–{self.num_classes - 1} besides the ignore index "
                                    f"{ignore_index}; set --ignore-index to the label of unlabelled pixels")
            confusion += torch.bincount(labels[kept] * self.num_classes + predicted[kept],
                                        minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        hits = confusion.diag().double()
        union = confusion.sum(0).double() + confusion.sum(1).double() - hits
        present = union > 0
        return {"miou": 100.0 * (hits[present] / union[present]).mean().item() if present.any() else 0.0,
                "pixel_accuracy": 100.0 * hits.sum().item() / max(confusion.sum().item(), 1)}

    def class_histogram(self, outputs: Outputs) -> list[int]:
        return torch.bincount(self.labels(outputs).flatten().cpu(), minlength=self.num_classes).tolist()

    def preview(self, pixels: torch.Tensor, outputs: Outputs) -> torch.Tensor:
        """Each image followed by the teacher's label map on it, one colour per class."""
        maps = palette(self.num_classes)[self.labels(outputs).cpu()].permute(0, 3, 1, 2)
        pixels = pixels.cpu().float()[:, :3].expand(-1, 3, -1, -1)
        return torch.stack([pixels, maps], 1).flatten(0, 1)


class Sequence(Classification):
    """Class scores at every position N×T×C (CTC recognizers, token classifiers): per-position KL, exact sequences.

    Scores may be logits or probabilities (PaddleOCR's exported recognizers end in a softmax);
    probabilities are taken by their log, so KL and KD losses mean the same for both, and a
    student may give either. Sequences are compared as greedy CTC decoding reads them: repeats
    collapsed, then the blank (class ``blank``, 0 as PaddleOCR and ``torch.nn.CTCLoss`` put it)
    dropped. A token classifier, whose positions are the tokens, compares them as they are: pass
    a subclass with ``collapse_repeats = False`` and ``blank = None`` as ``task``.
    """

    name = "sequence"
    rank = 5
    estimates_accuracy = False  # PP-OCRv4: 12.5 % exact agreement for every W8A8 variant, 65–94 % of words read
    default_target_weight = 0.0  # like segmentation: a sequence has no one class to aim a synthetic input at
    blank: ClassVar[int | None] = 0  # the CTC blank, dropped after collapsing; None keeps every class
    collapse_repeats: ClassVar[bool] = True  # CTC: a class repeated at neighbouring positions is read once

    @classmethod
    def recognises(cls, outputs: Outputs) -> bool:
        """Probabilities over the last dimension only: N×T×D logits look like token embeddings, which stay generic
        unless named (``task="sequence"``)."""
        return (isinstance(outputs, torch.Tensor) and outputs.dim() == 3 and outputs.shape[2] >= 2
                and _is_distribution(outputs))

    def check(self, outputs: Outputs) -> None:
        if not (isinstance(outputs, torch.Tensor) and outputs.dim() == 3 and outputs.shape[2] >= 2):
            raise FastDFKDError(f"task 'sequence' needs N×positions×classes scores, but the teacher returns {describe(outputs)}; "
                                "pick them with output_transform (--output-index/--output-key), put the batch first "
                                "(a T×N×C CTC head), or choose another --task")
        self._classes = int(outputs.shape[2])

    def target_loss(self, outputs: Outputs, targets: torch.Tensor) -> torch.Tensor:
        """Each sequence reads its target class somewhere: cross-entropy of the position-averaged class probabilities."""
        presence = _log_probabilities(outputs).exp().mean(1)
        return F.nll_loss(presence.clamp_min(1e-8).log(), targets)

    def divergence(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        """Per-position KL where both still pick the same class, averaged over positions."""
        return _agreeing_kl(_log_probabilities(student), _log_probabilities(teacher), dim=-1).mean()

    def kd_loss(self, student: Outputs, teacher: Outputs, temperature: float) -> torch.Tensor:
        """Per-position ``KL(p_T^τ ‖ p_S^τ)·τ²``, averaged over positions."""
        kl = _kl(_log_probabilities(student), _log_probabilities(teacher), temperature, dim=-1)
        return kl.sum(-1).mean() * temperature**2

    def importance_loss(self, model: Outputs, teacher: Outputs, reduction: str = "mean") -> torch.Tensor:
        """Per-position cross-entropy to the teacher's classes."""
        per_sample = F.nll_loss(_log_probabilities(model).transpose(1, 2), self.labels(teacher), reduction="none").mean(1)
        return per_sample if reduction == "none" else per_sample.mean()

    def labels(self, outputs: Outputs) -> torch.Tensor:
        """The top-1 class at every position (N×T), before any decoding."""
        return outputs.argmax(-1)

    def decode(self, outputs: Outputs) -> torch.Tensor:
        """Each input's class sequence as greedy CTC decoding reads it, left-aligned in N×T and padded with -1."""
        labels = self.labels(outputs).cpu()
        kept = torch.ones_like(labels, dtype=torch.bool)
        if self.collapse_repeats:
            kept[:, 1:] = labels[:, 1:] != labels[:, :-1]
        if self.blank is not None:
            kept &= labels != self.blank
        return _packed(labels, kept)

    def sample_agreement(self, teacher: Outputs, other: Outputs) -> torch.Tensor:
        """1 for inputs whose decoded sequences are the same (exact-sequence agreement, word accuracy's analogue)."""
        return _same_rows(self.decode(teacher), self.decode(other)).float()

    def scores(self, pairs: Iterable[tuple[Outputs, torch.Tensor]], ignore_index: int = DEFAULT_IGNORE_INDEX) -> dict[str, float]:
        """Exact-sequence accuracy against label sequences N×L padded with ``ignore_index`` (any L)."""
        correct = total = 0
        for outputs, labels in pairs:
            labels = labels.cpu().long().reshape(len(labels), -1)
            correct += int(_same_rows(self.decode(outputs), _packed(labels, labels != ignore_index)).sum())
            total += len(labels)
        return {"sequence_accuracy": 100.0 * correct / max(total, 1)}

    def class_histogram(self, outputs: Outputs) -> list[int]:
        return torch.bincount(self.labels(outputs).flatten().cpu(), minlength=self.num_classes).tolist()


class GenericOutputs(PredictionTask):
    """Any tensor or tuple/dict of tensors (detection heads, depth, embeddings): element-wise L1, no classes."""

    name = "generic"
    rank = 0

    @classmethod
    def recognises(cls, outputs: Outputs) -> bool:
        return bool(output_leaves(outputs))

    def check(self, outputs: Outputs) -> None:
        if not output_leaves(outputs):
            raise FastDFKDError(f"the teacher returns {type(outputs).__name__} with no tensor in it; it must return tensors")

    def divergence(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        return _l1(student, teacher)

    def kd_loss(self, student: Outputs, teacher: Outputs, temperature: float) -> torch.Tensor:
        """Mean absolute difference over every output (DFAD's loss for dense outputs; no temperature)."""
        return _l1(student, teacher)

    def labels(self, outputs: Outputs) -> Outputs:
        return outputs

    def sample_agreement(self, teacher: Outputs, other: Outputs) -> torch.Tensor:
        """1 for inputs whose outputs, all together, are within ``MATCH_TOLERANCE`` relative L1 error of the teacher's."""
        error = norm = torch.zeros(())
        for mine, theirs in zip(output_leaves(teacher), output_leaves(other)):
            error = error + (mine.float() - theirs.float().to(mine.device)).abs().flatten(1).sum(1).cpu()
            norm = norm + mine.float().abs().flatten(1).sum(1).cpu()
        return (error <= MATCH_TOLERANCE * norm.clamp_min(1e-12)).float()

    def scores(self, pairs: Iterable[tuple[Outputs, torch.Tensor]], ignore_index: int = DEFAULT_IGNORE_INDEX) -> dict[str, float]:
        raise FastDFKDError("labelled evaluation (--eval-data) needs class outputs; task 'generic' reports agreement with the teacher")


def palette(num_classes: int) -> torch.Tensor:
    """``num_classes`` RGB colours in [0, 1], evenly spaced hues at alternating brightness: neighbours stay apart."""
    hues = torch.arange(num_classes, dtype=torch.float32) * 0.618034 % 1.0
    value = torch.where(torch.arange(num_classes) % 2 == 0, 0.95, 0.6)
    k = (torch.tensor([5.0, 3.0, 1.0]) + hues[:, None] * 6) % 6
    return value[:, None] * (1 - 0.75 * (torch.minimum(k, 4 - k).clamp(0, 1)))


def _kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0, dim: int = 1) -> torch.Tensor:
    """Element-wise ``KL(p_T ‖ p_S)`` terms over the class dimension ``dim`` (sum them over it for the divergence)."""
    log_p_s = F.log_softmax(student / temperature, dim=dim)
    log_p_t = F.log_softmax(teacher / temperature, dim=dim)
    return F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True)


def _agreeing_kl(student: torch.Tensor, teacher: torch.Tensor, dim: int = 1) -> torch.Tensor:
    agree = (teacher.argmax(dim) == student.argmax(dim)).float()
    return agree * _kl(student, teacher, dim=dim).sum(dim)


def _distribution(scores: torch.Tensor) -> torch.Tensor:
    """Whether ``scores`` are probabilities over their last dimension (a model ending in a softmax), as a 0-dim tensor."""
    scores = scores.detach().float()
    return (scores.min() >= 0) & ((scores.sum(-1) - 1).abs() <= DISTRIBUTION_TOLERANCE).all()


def _is_distribution(scores: torch.Tensor) -> bool:
    return bool(_distribution(scores))


def _log_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the last dimension, from logits or from probabilities; chosen on the device, since the
    synthesis and distillation losses call it at every step and a host sync there would stall a GPU."""
    scores = scores.float()
    return torch.where(_distribution(scores), scores.clamp_min(1e-30).log(), F.log_softmax(scores, dim=-1))


def _packed(values: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Each row's ``kept`` entries moved to its front in order, the rest -1: rows then compare as sequences."""
    order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)
    return torch.where(kept.gather(1, order), values.gather(1, order), -1)


def _same_rows(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per row, whether two -1-padded sequences are equal, whatever their padded widths."""
    width = max(first.shape[1], second.shape[1])
    first, second = (F.pad(rows, (0, width - rows.shape[1]), value=-1) for rows in (first, second))
    return (first == second).all(1)


def _l1(student: Outputs, teacher: Outputs) -> torch.Tensor:
    pairs = list(zip(output_leaves(student), output_leaves(teacher)))
    if len(pairs) != len(output_leaves(teacher)) or any(s.shape != t.shape for s, t in pairs):
        raise FastDFKDError(f"the student returns {describe(student)} but the teacher {describe(teacher)}; "
                            "give the student the teacher's outputs")
    return sum(F.l1_loss(s.float(), t.float()) for s, t in pairs) / len(pairs)


# -- the registry ------------------------------------------------------------------------------

def _task_entry(plugin: str, cls: type[PredictionTask]) -> tuple[str, type[PredictionTask]]:
    if not (isinstance(cls, type) and issubclass(cls, PredictionTask)) or not getattr(cls, "name", None):
        raise FastDFKDError(f"plugin {plugin!r} registered {cls!r}, which is not a PredictionTask subclass with a name")
    return cls.name, cls


def task_registry() -> dict[str, type[PredictionTask]]:
    """Every registered task by name (``classification``, ``segmentation``, ``sequence``, ``generic`` and plugins')."""
    return {name: cls for name, (cls, _) in registry("fastdfkd_register_tasks", "task", _task_entry).items()}


def make_task(task: str | PredictionTask | type[PredictionTask], example: Outputs) -> PredictionTask:
    """The task for a teacher whose probe batch gave ``example``: named, given (an instance, or a subclass to build from
    ``example``, e.g. a :class:`Sequence` with other decoding settings), or (``"auto"``) recognised."""
    if isinstance(task, PredictionTask):
        task.check(example)
        return task
    if isinstance(task, type) and issubclass(task, PredictionTask):
        return task(example)
    tasks = task_registry()
    if task == "auto":
        for cls in sorted(tasks.values(), key=lambda cls: -cls.rank):
            if cls.recognises(example):
                return cls(example)
        raise FastDFKDError(f"no task recognises the teacher's output ({describe(example)}); choose one with --task "
                            f"({', '.join(sorted(tasks))})")
    if task not in tasks:
        raise FastDFKDError(f"unknown task {task!r}; choose auto or one of {', '.join(sorted(tasks))}")
    return tasks[task](example)
