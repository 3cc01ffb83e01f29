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
from typing import Callable, Literal

import torch
from torch import nn

from ..errors import FastDFKDError
from .objective import InversionObjective

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
    ) -> None:
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
        # Set by multi-process runs: averages tensors in place across processes, so every
        # process applies the same meta step and BN momentum update (see distributed.py).
        self.average_across_processes: Callable[[list[torch.Tensor]], None] | None = None

    def task(self, labels: torch.Tensor, adversarial: bool = True, steps: int | None = None) -> TaskResult:
        """Adapt a clone of the meta-generator to one batch in ``steps`` (default k) inner steps, then take one meta step."""
        fast = self._clone_generator()
        z = torch.randn(len(labels), self.generator.latent_dim, generator=self.rng, device=self.rng.device)
        z = z.to(labels.device).requires_grad_()
        inner = torch.optim.Adam(
            [{"params": fast.parameters()}, {"params": [z], "lr": self.lr_z}], lr=self.lr_g, betas=(0.5, 0.999)
        )
        fomaml = self.meta_update == "fomaml"
        gradient_sum = [torch.zeros_like(p) for p in fast.parameters()] if fomaml else []
        best = TaskResult(pixels=torch.empty(0), loss=math.inf)
        best_stats = None
        for _ in range(self.steps if steps is None else steps):
            with self.objective.autocast(z.device):
                pixels = fast(z)
            if pixels.dtype in (torch.bfloat16, torch.float16):  # mixed precision inside, float32 pixels out
                pixels = pixels.float()
            loss = self.objective(pixels, labels, adversarial=adversarial)
            value = loss.item()  # the one host sync per step
            if not math.isfinite(value):
                raise NonFiniteLoss(f"inversion loss became {value}")
            inner.zero_grad(set_to_none=False)
            loss.backward()
            for total, param in zip(gradient_sum, fast.parameters()):
                total += param.grad
            if value < best.loss:
                best = TaskResult(pixels=pixels.detach(), loss=value)
                best_stats = self.objective.batch_statistics()
            inner.step()
        self._meta_step(fast, gradient_sum)
        if best_stats is not None:
            if self.average_across_processes is not None:
                self.average_across_processes([t for stats in best_stats if stats is not None for t in stats])
            self.objective.update_momentum(best_stats)
        self.tasks_done += 1
        return best

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
