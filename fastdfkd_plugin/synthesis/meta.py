"""The FastDFKD meta-synthesizer, top to bottom (Fang et al., AAAI 2022).

One *task* makes one batch:

1. clone the meta-generator θ into θ' and draw fresh latents z;
2. run k Adam steps over θ' and z on the inversion loss, keeping the best batch;
3. move θ with its own persistent Adam, using either first-order MAML (the sum of
   the k inner gradients) or Reptile (θ − θ'_k) as the meta gradient;
4. fold the best batch's BatchNorm statistics into the momentum averages.

The meta-generator therefore learns the features that all batches share, and a new
batch needs only k steps instead of DeepInversion's thousands.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import nn
from torch.utils import _pytree as pytree

from ..errors import FastDFKDError
from .objective import InversionObjective
from .priors import Statistics

MetaUpdate = Literal["fomaml", "reptile"]


def paper_learning_rates(steps: int) -> tuple[float, float]:
    """(lr_g, lr_z) from the paper's CIFAR settings for k = 2, 5, 10 (nearest k below or at)."""
    if steps <= 2:
        return 5e-3, 0.015
    if steps <= 5:
        return 3e-3, 0.01
    return 2e-3, 0.01


@dataclass
class TaskResult:
    """The batch a task hands out (pixels in [0, 1]) and its inversion loss."""

    pixels: torch.Tensor
    loss: float


class NonFiniteLoss(RuntimeError):
    """The inversion loss became NaN or Inf inside a task."""


@dataclass
class BestStep:
    """The best inner step of a task so far, kept on the device so that choosing it needs no host sync.

    Choosing the best batch and checking finiteness with ``loss.item()`` synchronised the host
    with the device at every step; here both are device operations, read once per task by
    :meth:`read`. The prior's statistics are concatenated into one vector, so keeping them
    costs one selection per step however many layers the prior watches.
    """

    loss: torch.Tensor  # 0-dim, the best loss so far
    pixels: torch.Tensor
    statistics: torch.Tensor  # the tensors among the prior's statistics, flattened and concatenated
    layout: tuple[pytree.TreeSpec, list[Any]]  # how to split them back: per leaf its (shape, dtype), or the leaf itself
    first_non_finite: torch.Tensor  # the first non-finite loss of the task, or the latest loss while all are finite

    @classmethod
    def of(cls, loss: torch.Tensor, pixels: torch.Tensor, statistics: Statistics) -> BestStep:
        leaves, spec = pytree.tree_flatten(statistics)
        tensors = [leaf if leaf.dim() == 1 else leaf.reshape(-1) for leaf in leaves if isinstance(leaf, torch.Tensor)]
        slots = [_Slot(leaf.shape, leaf.dtype) if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        loss = loss.detach()
        return cls(loss, pixels.detach(), torch.cat(tensors) if tensors else loss.new_zeros(0), (spec, slots), loss)

    def keep_better(self, step: BestStep) -> BestStep:
        """This step or ``step``, whichever has the lower loss (strictly: the first best wins, and NaN never does)."""
        better = step.loss < self.loss
        return BestStep(torch.where(better, step.loss, self.loss), torch.where(better, step.pixels, self.pixels),
                        torch.where(better, step.statistics, self.statistics), step.layout,
                        torch.where(torch.isfinite(self.first_non_finite), step.loss, self.first_non_finite))

    def read(self) -> tuple[float, Statistics]:
        """(best loss, the prior's statistics of the best batch), with one host sync; raises :class:`NonFiniteLoss`."""
        first_non_finite, loss = torch.stack([self.first_non_finite, self.loss]).tolist()
        if not math.isfinite(first_non_finite):
            raise NonFiniteLoss(f"inversion loss became {first_non_finite}")
        spec, slots = self.layout
        pieces = iter(self.statistics.split([slot.shape.numel() for slot in slots if isinstance(slot, _Slot)]))
        leaves = [next(pieces).view(slot.shape).to(slot.dtype) if isinstance(slot, _Slot) else slot for slot in slots]
        return loss, pytree.tree_unflatten(leaves, spec)


@dataclass(frozen=True)
class _Slot:
    """Where a tensor of the prior's statistics was, in :attr:`BestStep.layout`."""

    shape: torch.Size
    dtype: torch.dtype


class MetaSynthesizer:
    """Meta-learns a generator so that each new batch needs only ``steps`` optimisation steps."""

    def __init__(
        self,
        generator: nn.Module,
        objective: InversionObjective,
        rng: torch.Generator,
        steps: int = 5,
        lr_g: float | None = None,
        lr_z: float | None = None,
        meta_update: MetaUpdate = "fomaml",
        meta_optimizer: torch.optim.Optimizer | None = None,
        compile: bool = False,
    ) -> None:
        """``compile``: run each inner step's forward (and so its backward) as a ``torch.compile``d graph (:meth:`_traced_step`)."""
        if meta_update not in ("fomaml", "reptile"):
            raise FastDFKDError(f"meta_update must be 'fomaml' or 'reptile', got {meta_update!r}")
        default_g, default_z = paper_learning_rates(steps)
        self.generator = generator.train()
        self.objective = objective
        self.rng = rng
        self.steps = steps
        self.lr_g = default_g if lr_g is None else lr_g
        self.lr_z = default_z if lr_z is None else lr_z
        self.meta_update = meta_update
        self.meta_optimizer = meta_optimizer or torch.optim.Adam(
            generator.parameters(), lr=self.lr_g * steps, betas=(0.5, 0.999)
        )
        self.tasks_done = 0
        self._fast: nn.Module | None = None
        self._compiled_step = torch.compile(self._traced_step, dynamic=False) if compile else None
        # Set by multi-process runs: averages tensors in place across processes, so every
        # process applies the same meta step and BN momentum update (see distributed.py).
        self.average_across_processes: Callable[[list[torch.Tensor]], None] | None = None

    def task(self, labels: torch.Tensor, adversarial: bool = True, steps: int | None = None) -> TaskResult:
        """Adapt a clone of the meta-generator to one batch in ``steps`` (default k) inner steps, then take one meta step."""
        fast = self._clone_generator()
        z = torch.randn(len(labels), self.generator.latent_dim, generator=self.rng, device=self.rng.device)
        z = z.to(labels.device).requires_grad_()
        inner = torch.optim.Adam(  # fused (one kernel a step, no host reads) where bit-identity with eager runs is not kept
            [{"params": fast.parameters()}, {"params": [z], "lr": self.lr_z}], lr=self.lr_g, betas=(0.5, 0.999),
            fused=self._compiled_step is not None or None,
        )
        fomaml = self.meta_update == "fomaml"
        gradient_sum = [torch.zeros_like(p) for p in fast.parameters()] if fomaml else []
        best: BestStep | None = None
        for _ in range(self.steps if steps is None else steps):
            if self._compiled_step is None:
                pixels = self._generate(fast, z)
                loss, statistics = self.objective(pixels, labels, adversarial=adversarial), None
            else:
                pixels, loss, statistics = self._compiled_step(fast, z, labels, adversarial, self.objective.draw(len(labels)))
            inner.zero_grad(set_to_none=False)
            loss.backward()
            if gradient_sum:
                torch._foreach_add_(gradient_sum, [param.grad for param in fast.parameters()])
            step = BestStep.of(loss, pixels, self.objective.batch_statistics() if statistics is None else statistics)
            best = step if best is None else best.keep_better(step)
            inner.step()
        if best is None:
            raise FastDFKDError(f"a task takes at least one inner step, got steps={steps}")
        loss_value, best_stats = best.read()  # the one host sync per task
        self._meta_step(fast, gradient_sum)
        if self.average_across_processes is not None:
            self.average_across_processes([t for stats in best_stats if stats is not None for t in stats])
        self.objective.update_momentum(best_stats)
        self.tasks_done += 1
        return TaskResult(pixels=best.pixels, loss=loss_value)

    def _generate(self, fast: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """The adapted generator's batch, in float32 even under mixed precision."""
        with self.objective.autocast(z.device):
            pixels = fast(z)
        return pixels.float() if pixels.dtype in (torch.bfloat16, torch.float16) else pixels

    def _traced_step(self, fast: nn.Module, z: torch.Tensor, labels: torch.Tensor, adversarial: bool,
                     draws: Any) -> tuple[torch.Tensor, torch.Tensor, Statistics]:
        """One inner step's forward with the augmentation drawn beforehand and the prior's statistics as outputs:
        what ``compile`` captures (its backward follows as a compiled graph too)."""
        pixels = self._generate(fast, z)
        return pixels, self.objective.loss(pixels, labels, adversarial, draws), self.objective.batch_statistics()

    def _clone_generator(self) -> nn.Module:
        """θ′ ← θ, into the same clone every task (no per-task allocation)."""
        if self._fast is None:
            self._fast = copy.deepcopy(self.generator)
        else:
            with torch.no_grad():
                for clone, original in zip(self._fast.state_dict().values(), self.generator.state_dict().values()):
                    clone.copy_(original)
        return self._fast

    def _meta_step(self, fast: nn.Module, gradient_sum: list[torch.Tensor]) -> None:
        """Move θ along the first-order MAML gradient sum (if given) or the Reptile difference θ − θ′."""
        pairs = zip(self.generator.parameters(), fast.parameters())
        gradients = gradient_sum or [param.detach() - adapted.detach() for param, adapted in pairs]
        if self.average_across_processes is not None:
            self.average_across_processes(gradients)
        self.meta_optimizer.zero_grad(set_to_none=False)
        for param, gradient in zip(self.generator.parameters(), gradients):
            param.grad = gradient
        self.meta_optimizer.step()

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "bn_momentum": self.objective.momentum_state(),
            "tasks_done": self.tasks_done,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.objective.load_momentum_state(state["bn_momentum"])
        self.tasks_done = state["tasks_done"]
