"""Knowledge distillation from a stream of input batches: the paper's Algorithm 1.

Every ``steps_per_batch`` KD steps a new batch joins a bounded in-memory bank
(oldest images evicted); each KD step draws a random minibatch from the bank,
applies crop+flip, and minimises the teacher's task's KD loss (``KL(p_T^τ ‖ p_S^τ)·τ²``
for class logits, per pixel for class maps, L1 for generic outputs) with SGD whose learning
rate is one cosine function of progress (steps done, or the share of a time budget
spent). When the batches come from a :class:`DataSource` with an adversarial term
(``fastdfkd``), the loop aims it at the student being trained, so new batches go
where the student still disagrees.

The same loop serves data-free distillation (:func:`distill_datafree`, the library
behind ``fastdfkd distill``) and pruning recovery. A checkpoint
(:class:`~fastdfkd_plugin.runtime.checkpoint.Checkpoint`) holds everything the loop depends on
(student, optimiser, bank, random states, the source's generator), so a resumed run
ends where an uninterrupted one would. :func:`distill` and :func:`distill_datafree` take
a model or a :class:`~fastdfkd_plugin.teacher.teacher.Teacher` as the teacher (:func:`teacher_for`
turns it into the one Teacher); below them everything takes that Teacher. Under ``torchrun`` the
student trains with DistributedDataParallel, each process synthesising its own
batches (see :mod:`fastdfkd_plugin.runtime.distributed`).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import FastDFKDError
from ..evaluation.metrics import agreement, eval_chunk
from ..runtime import distributed
from ..runtime.checkpoint import DISTILLATION, Checkpoint
from ..sources.base import DataSource
from ..synthesis.augment import crop_flip
from ..teacher.tasks import DEFAULT_IGNORE_INDEX, Outputs, PredictionTask, describe, make_task, output_leaves
from ..teacher.teacher import OutputTransform, Teacher, frozen, model_device, outputs_of
from .config import DistillConfig
from .memory_plan import plan_distillation

Evaluator = Callable[[nn.Module], dict[str, float]]


def kd_loss(student_outputs: Outputs, teacher_outputs: Outputs, temperature: float = 4.0,
            task: str | PredictionTask = "auto") -> torch.Tensor:
    """The distillation loss of ``task`` (default: recognised from the teacher's outputs, as a Teacher does):
    ``KL(p_T^τ ‖ p_S^τ)·τ²`` averaged over the batch for class logits (τ = 4: ``fastdfkd distill``'s default;
    the paper uses 20), over pixels for class maps, L1 for generic outputs. Pass ``task=teacher.task`` to skip detection."""
    return make_task(task, teacher_outputs).kd_loss(student_outputs, teacher_outputs, temperature)


class MemoryBank:
    """A bounded FIFO store of input images that KD steps sample from.

    The images live in one buffer of ``capacity`` images, allocated with the first batch and
    written round-robin. Growing by concatenation held the bank twice at every new batch and, with
    freed memory kept for reuse, left the heap in pieces too small for the next, larger bank
    (docs/memory.md#distillation-and-pruning). Index ``i`` is always the ``i``-th oldest image held,
    as in a list that drops its oldest, so a seeded run samples the same images either way.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffer: torch.Tensor | None = None
        self.count = 0  # images held
        self.next = 0  # the buffer slot the next image goes to: the oldest one once the bank is full

    def add(self, images: torch.Tensor) -> None:
        images = images.detach()[-self.capacity :]
        if self.buffer is None:
            try:
                self.buffer = torch.empty((self.capacity, *images.shape[1:]), dtype=images.dtype, device=images.device)
            except torch.OutOfMemoryError as exc:
                raise FastDFKDError(f"out of memory making room for an image bank of {self.capacity} images; "
                                    "lower bank_size (--bank-size)") from exc
        slots = (self.next + torch.arange(len(images), device=self.buffer.device)) % self.capacity
        self.buffer[slots] = images.to(self.buffer.device)
        self.next = (self.next + len(images)) % self.capacity
        self.count = min(self.count + len(images), self.capacity)

    def sample(self, batch_size: int, rng: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, self.count, (batch_size,), generator=rng, device=rng.device)
        return self.buffer[self._slots(index.to(self.buffer.device))]

    @property
    def images(self) -> torch.Tensor | None:
        """The images held, oldest first (what checkpoints keep); a copy once the bank has wrapped round."""
        if self.buffer is None:
            return None
        oldest = (self.next - self.count) % self.capacity
        if oldest + self.count <= self.capacity:
            return self.buffer[oldest : oldest + self.count]
        return torch.cat([self.buffer[oldest:], self.buffer[: self.next]])

    def restore(self, images: torch.Tensor | None) -> None:
        """Hold exactly ``images`` (oldest first), as :attr:`images` gave them."""
        self.buffer, self.count, self.next = None, 0, 0
        if images is not None:
            self.add(images)

    def _slots(self, index: torch.Tensor) -> torch.Tensor:
        """Buffer slots of the ``index``-th oldest images."""
        return (self.next - self.count + index) % self.capacity


class KDBatches:
    """Algorithm 1's data side: new batches join a bounded bank on :meth:`refill`, and each
    :meth:`draw` is a crop+flipped bank minibatch with the teacher's outputs on it.

    ``batches`` is a :class:`DataSource` (a batch of ``synthesis_batch_size`` synthesised
    per refill) or any iterator of input tensors.
    """

    def __init__(self, teacher: Teacher, batches: DataSource | Iterator[torch.Tensor], batch_size: int,
                 synthesis_batch_size: int, bank_size: int, rng: torch.Generator) -> None:
        self.teacher, self.batches, self.rng = teacher, batches, rng
        self.batch_size, self.synthesis_batch_size = batch_size, synthesis_batch_size
        self.bank = MemoryBank(bank_size)

    def refill(self) -> None:
        if isinstance(self.batches, DataSource):
            images = self.batches.next_batch(self.synthesis_batch_size).inputs
        else:
            images = _next_tensor(self.batches)
        self.bank.add(images.to(self.teacher.device))

    def draw(self) -> tuple[torch.Tensor, Outputs]:
        """(inputs, teacher outputs): ``batch_size`` bank images, cropped and flipped."""
        inputs = crop_flip(self.bank.sample(self.batch_size, self.rng), self.rng)
        with torch.no_grad():
            return inputs, self.teacher.outputs(inputs)


@dataclass
class DistillLog:
    """Per-step KD loss and the evaluations made along the way, with the training time spent so far."""

    losses: list[float] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    synthesis_seconds: float = 0.0
    kd_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.synthesis_seconds + self.kd_seconds


class Distiller:
    """The KD loop as an object, so that it can checkpoint, resume and be driven step by step.

    ``batches`` is a :class:`DataSource` built for ``teacher`` (each new batch synthesised
    on demand) or any iterator of input tensors (real images). Only a source's state goes
    into checkpoints; an iterator restarts from wherever the caller puts it.
    ``student_output_transform`` picks the student's logits when it returns more than
    a tensor (a pruned copy of a tuple-output teacher: the teacher's own transform).
    ``run_settings``: what else a resumed run must share with this one (a caller's own settings).
    """

    def __init__(
        self,
        teacher: Teacher,
        student: nn.Module,
        batches: DataSource | Iterator[torch.Tensor],
        config: DistillConfig,
        student_output_transform: OutputTransform | None = None,
        run_settings: dict[str, Any] | None = None,
    ) -> None:
        self.device = model_device(student)
        if teacher.device != self.device:
            raise FastDFKDError(
                f"the student is on {self.device} but the teacher is on {teacher.device}; move both to one device"
            )
        if student is teacher.model:
            raise FastDFKDError("the student is the teacher itself; pass a separate (e.g. copied or pruned) model")
        self.log = DistillLog()
        self.teacher, self.batches = teacher, batches
        self.student, self.config = student, config
        self.student_output_transform = student_output_transform
        self.settings = distill_settings(config, batches, run_settings)
        check_outputs_match(self.teacher, student, student_output_transform)
        self.rank = distributed.rank()
        self.rng = torch.Generator(device=self.device).manual_seed(config.seed + self.rank)
        # DDP averages the student's gradients across processes; `student` stays the plain module.
        self.model = nn.parallel.DistributedDataParallel(student) if distributed.active() else student
        self.data = KDBatches(self.teacher, self.batches, config.batch_size, config.synthesis_batch_size or config.batch_size,
                              config.bank_size, self.rng)
        self.optimizer = torch.optim.SGD(
            student.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.step = 0

    # -- one step of Algorithm 1 ----------------------------------------------------------
    @property
    def progress(self) -> float:
        """How far the run is, in [0, 1]: the share of the time budget spent, or of the steps done."""
        if self.config.seconds:
            return self.log.seconds / self.config.seconds
        return self.step / self.config.steps if self.config.steps else 1.0

    def kd_step(self) -> float:
        """Add a new batch to the bank when due, then one SGD step on a bank minibatch."""
        if self.step % self.config.steps_per_batch == 0:
            started = time.perf_counter()
            self.data.refill()
            self.log.synthesis_seconds += time.perf_counter() - started
        started = time.perf_counter()
        self.student.train()
        inputs, target = self.data.draw()
        prediction = outputs_of(self.model(inputs), self.student_output_transform)
        _check_shapes(prediction, target)
        loss = self.teacher.task.kd_loss(prediction, target, self.config.temperature)
        self.optimizer.zero_grad()
        loss.backward()
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate(self.progress)
        self.optimizer.step()
        self.step += 1
        value = loss.item()
        self.log.losses.append(value)
        self.log.kd_seconds += time.perf_counter() - started
        return value

    @property
    def finished(self) -> bool:
        """All steps done, or the time budget spent."""
        out_of_time = self.config.seconds is not None and self.log.seconds >= self.config.seconds
        if self.config.seconds is not None and distributed.active():
            out_of_time = distributed.any_(out_of_time, self.device)  # every process stops at the same step
        return self.step >= self.config.steps or out_of_time

    # -- the loop ---------------------------------------------------------------------------
    def run(
        self,
        evaluate: Evaluator | None = None,
        eval_every: int = 0,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 0,
        progress: bool = False,
        eval_every_seconds: float = 0.0,
        desc: str = "distillation",
    ) -> DistillLog:
        """Run to ``config.steps`` (or the time budget): evaluate and checkpoint every N steps, and at the end.

        ``eval_every_seconds`` evaluates by training time instead (for accuracy-against-time
        curves); evaluation time is not counted in the log's seconds. Ctrl-C writes a
        checkpoint (when one is configured) before the interrupt propagates. The progress
        bar (labelled ``desc``) shows only on a terminal.
        """
        source = self.batches if isinstance(self.batches, DataSource) else None
        if source is not None:
            source.set_student(self.student, self.student_output_transform)
        try:
            with self.teacher.frozen(), tqdm(
                total=None if self.config.seconds else self.config.steps, initial=self.step, desc=desc, unit="step",
                disable=None if progress else True,
            ) as bar:
                if evaluate is not None and self.step == 0:
                    self._evaluate(evaluate)
                finished = self.finished  # once per step: under torchrun with a time budget it is a collective
                while not finished:
                    loss = self.kd_step()
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                    finished = self.finished
                    if evaluate is not None and (finished or self._evaluation_due(eval_every, eval_every_seconds)):
                        self._evaluate(evaluate)
                    if checkpoint is not None and (finished or (checkpoint_every and self.step % checkpoint_every == 0)):
                        self.save_checkpoint(checkpoint)
        except KeyboardInterrupt:
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            raise
        finally:
            if source is not None:
                source.set_student(None)
            self.student.eval()
        if distributed.active():
            distributed.broadcast_buffers(self.student)
        return self.log

    def _evaluation_due(self, every_steps: int, every_seconds: float) -> bool:
        last = self.log.evaluations[-1]["seconds"] if self.log.evaluations else 0.0
        return bool(every_steps and self.step % every_steps == 0) or bool(every_seconds and self.log.seconds >= last + every_seconds)

    def _evaluate(self, evaluate: Evaluator) -> None:
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad():
            metrics = evaluate(self.student)
        self.student.train(was_training)
        since = self.log.evaluations[-1]["step"] if self.log.evaluations else 0
        recent = self.log.losses[since:]
        loss = {"loss": sum(recent) / len(recent)} if recent else {}
        self.log.evaluations.append({"step": self.step, "seconds": round(self.log.seconds, 3), **loss, **metrics})

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the next steps depend on: a :class:`Checkpoint`'s state."""
        return {
            "step": self.step,
            "student": self.student.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "bank": self.data.bank.images,
            "rng": self.rng.get_state(),
            "source": self.batches.state_dict() if isinstance(self.batches, DataSource) else None,
            "log": dataclasses.asdict(self.log),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_same_shapes(state["student"], self.student)
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.data.bank.restore(None if state["bank"] is None else state["bank"].to(self.device))
        self.rng.set_state(state["rng"].cpu())
        if state["source"] is not None and isinstance(self.batches, DataSource):
            self.batches.load_state_dict(state["source"])
        self.step = state["step"]
        self.log = DistillLog(**state["log"])
        if self.rank > 0:  # the checkpoint holds rank 0's random streams: give this process its own
            self.rng.manual_seed(self.config.seed + self.rank + 7919 * self.step)
            if isinstance(self.batches, DataSource):
                self.batches.reseed(self.batches.seed + self.rank + 7919 * self.step)

    def save_checkpoint(self, path: str | Path) -> None:
        """Write the loop's state atomically: an interruption never leaves half a file.

        Only rank 0 writes in a multi-process run; every process can resume from its file.
        """
        if self.rank == 0:
            Checkpoint(DISTILLATION, self.teacher.info.fingerprint, self.settings, self.state_dict()).save(path)

    def resume(self, path: str | Path) -> None:
        """Continue from :meth:`save_checkpoint`: refused for another teacher or other settings."""
        self.restore(read_checkpoint(path, self.teacher))

    def restore(self, saved: Checkpoint) -> None:
        """Continue from a checkpoint already read (:func:`read_checkpoint`)."""
        saved.check_settings(self.settings)
        self.load_state_dict(saved.state)


def distill_settings(config: DistillConfig, batches: DataSource | Iterator[torch.Tensor],
                     run_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote its checkpoint: KD config, source, a caller's own settings."""
    source_settings = batches.run_settings() if isinstance(batches, DataSource) else {}
    return {**dataclasses.asdict(config), **source_settings, **(run_settings or {})}


def read_checkpoint(path: str | Path, teacher: Teacher) -> Checkpoint:
    """The distillation checkpoint at ``path``, made with ``teacher``, on its device (refused in one sentence otherwise)."""
    return Checkpoint.load(path, DISTILLATION, teacher.info.fingerprint, teacher.device)


def resumed_checkpoint(resume: str | Path | bool | None, checkpoint: str | Path | None, teacher: Teacher
                       ) -> tuple[str | Path | None, Checkpoint | None]:
    """(where the run writes checkpoints, the checkpoint it continues from): the one resume convention.

    ``resume=True`` continues from ``checkpoint``; ``resume=PATH`` from that file, which is
    also where checkpoints go when ``checkpoint`` is not given; ``None``/``False`` starts afresh.
    """
    if resume is True and checkpoint is None:
        raise FastDFKDError("resume=True continues from the checkpoint path, but none is set; pass checkpoint=PATH or resume=PATH")
    resume_from = checkpoint if resume is True else resume or None
    return checkpoint or resume_from, None if resume_from is None else read_checkpoint(resume_from, teacher)


def check_same_shapes(saved: dict[str, torch.Tensor], student: nn.Module) -> None:
    """Refuse a checkpoint whose student has another architecture, naming the first tensor that differs."""
    own = student.state_dict()
    for key in [*saved, *(k for k in own if k not in saved)]:
        theirs = tuple(saved[key].shape) if key in saved else None
        mine = tuple(own[key].shape) if key in own else None
        if theirs != mine:
            raise FastDFKDError(
                f"the checkpoint's student has {key} {'of shape ' + str(theirs) if theirs else 'missing'}, this student "
                f"{'of shape ' + str(mine) if mine else 'has no such tensor'}; resume with the same student architecture"
            )


def _check_shapes(prediction: Outputs, target: Outputs) -> None:
    mine, theirs = output_leaves(prediction), output_leaves(target)
    if len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs)):
        raise FastDFKDError(
            f"the student returns {describe(prediction)} but the teacher {describe(target)}; "
            "give the student the teacher's outputs (number of classes, output size)"
        )


def teacher_for(teacher: Teacher | nn.Module, batches: DataSource | Iterator[torch.Tensor]
                ) -> tuple[Teacher, DataSource | Iterator[torch.Tensor]]:
    """(Teacher, batches) for a public entry point's ``teacher``: the source's own Teacher for a source's teacher
    or model, else a Teacher for the batches' input shape (an iterator's first batch is read to learn it, and put back).

    A source built for another Teacher is refused here, the one place that checks it.
    """
    if isinstance(batches, DataSource):
        if isinstance(teacher, Teacher) and teacher is not batches.teacher:
            raise FastDFKDError("the source was built for another Teacher; build it with get_source(name, teacher)")
        if teacher is batches.teacher or teacher is batches.teacher.model:
            return batches.teacher, batches
        return Teacher.of(teacher, batches.input_shape, device=None), batches
    if isinstance(teacher, Teacher):
        return teacher, batches
    first = _next_tensor(batches)
    return Teacher.of(teacher, first.shape[1:], device=None), itertools.chain([first], batches)


def _next_tensor(batches: Iterator[torch.Tensor]) -> torch.Tensor:
    try:
        return next(batches)
    except StopIteration as exc:
        raise FastDFKDError("the batch iterator ran out; pass an endless one (e.g. itertools.cycle)") from exc


@torch.no_grad()
def check_outputs_match(teacher: Teacher, student: nn.Module, student_output_transform: OutputTransform | None = None) -> None:
    """Refuse a student whose outputs differ in size from the teacher's, before any synthesis is spent."""
    probe = torch.zeros(2, *teacher.input_shape, device=teacher.device)
    with teacher.frozen(), frozen(student):
        _check_shapes(outputs_of(student(probe), student_output_transform), teacher.outputs(probe))


def distill(
    teacher: Teacher | nn.Module,
    student: nn.Module,
    batches: DataSource | Iterator[torch.Tensor],
    config: DistillConfig,
    progress: bool = False,
    desc: str = "distillation",
) -> DistillLog:
    """Train ``student`` to match ``teacher`` on inputs from ``batches``; the teacher stays frozen."""
    teacher, batches = teacher_for(teacher, batches)
    return Distiller(teacher, student, batches, config).run(progress=progress, desc=desc)


def distill_datafree(
    teacher: Teacher | nn.Module,
    student: nn.Module,
    source: DataSource,
    config: DistillConfig,
    *,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    eval_samples: int = 512,
    eval_every: int = 400,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 400,
    resume: str | Path | bool | None = None,
    student_output_transform: OutputTransform | None = None,
    memory_budget: int | None = None,
    memory_plan: bool = True,
    progress: bool = False,
) -> Distiller:
    """Data-free distillation (the paper's Algorithm 1) of ``student`` from ``teacher``, on one process or under torchrun.

    ``student`` moves to the teacher's device and is trained in place. It is evaluated
    every ``eval_every`` KD steps and at the end: the teacher's task's scores (%) on ``eval_data``
    (normalised inputs, labels: accuracy for classes; mIoU and pixel accuracy for class maps,
    pixels labelled ``ignore_index`` left out) if given, else agreement (%) with the teacher on
    ``eval_samples`` synthetic images that never enter the bank. ``checkpoint`` is written every
    ``checkpoint_every`` steps, at the end and on Ctrl-C; ``resume`` continues from a checkpoint:
    ``True`` from ``checkpoint``, or a path (then also written there when ``checkpoint`` is not given).

    Under torchrun (after :func:`fastdfkd_plugin.runtime.distributed.setup`, with the teacher on
    the process's device), every process synthesises its own batches from its own seed,
    the state the source shares (fastdfkd's meta-generator) stays identical everywhere,
    and the student and that state are checked for agreement across processes at the end.
    ``memory_plan`` first sizes the synthesis batch and the image bank to ``memory_budget`` bytes (default: half
    of the memory there is) and refuses a KD batch that does not fit
    (:func:`~fastdfkd_plugin.training.memory_plan.plan_distillation`); where all fits, nothing changes.
    Returns the :class:`Distiller` (its ``log`` holds losses and evaluations).
    """
    teacher, _ = teacher_for(teacher, source)
    checkpoint, saved = resumed_checkpoint(resume, checkpoint, teacher)
    student.to(teacher.device)
    if memory_plan:
        check_outputs_match(teacher, student, student_output_transform)  # a wrong student gets its sentence, not the probe's error
        config = plan_distillation(source, student, config, budget=memory_budget, held_out=0 if eval_data is not None else eval_samples,
                                   saved_settings=saved and saved.settings, student_output_transform=student_output_transform,
                                   progress=progress and distributed.rank() == 0).config
    distiller = Distiller(teacher, student, source, config, student_output_transform)  # checks the student before any synthesis
    shared: dict[str, nn.Module] = {}
    if distributed.active():
        if distributed.rank() > 0:
            source.reseed(source.seed + distributed.rank())
        shared = source.share_across_processes()
    if eval_data is not None:
        eval_x, eval_y = (tensor.to(teacher.device) for tensor in eval_data)

        def evaluate(model: nn.Module) -> dict[str, float]:
            size = eval_chunk(teacher.input_shape)
            pairs = ((outputs_of(model(x), student_output_transform), y) for x, y in zip(eval_x.split(size), eval_y.split(size)))
            return teacher.task.scores(pairs, ignore_index)
    else:
        held_out = source.synthetic_set(eval_samples, config.synthesis_batch_size or config.batch_size).inputs

        def evaluate(model: nn.Module) -> dict[str, float]:
            return {"agreement": 100 * agreement(teacher, model, held_out, model_output_transform=student_output_transform)}

    if saved is not None:
        distiller.restore(saved)
    distiller.run(evaluate, eval_every, checkpoint, checkpoint_every, progress=progress and distributed.rank() == 0)
    if distributed.active():
        distributed.check_in_sync({"student": student, **shared}, teacher.device)
    return distiller
