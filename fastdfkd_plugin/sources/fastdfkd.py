"""The ``fastdfkd`` source: batches from the meta-learned generator, k steps each."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import FastDFKDError
from ..hooks.argtypes import positive
from ..runtime import distributed
from ..runtime.checkpoint import GENERATOR_STATE, Checkpoint
from ..synthesis.generator import LATENT_DIM
from ..synthesis.meta import MetaSynthesizer, MetaUpdate, NonFiniteLoss
from ..synthesis.registry import make_generator
from ..teacher.teacher import OutputTransform, Teacher
from . import cache
from .base import NonFiniteBatch, SourceOption, announce
from .inverting import InvertingSource

log = logging.getLogger(__name__)

WARMUP_SEED = 0x5EED  # warm-up task t of seed s draws from the stream seeded WARMUP_SEED + 100003·s + t


class FastDFKDSource(InvertingSource):
    """FastDFKD meta-synthesizer (Fang et al., AAAI 2022): a few steps per batch from a warm generator.

    ``generator`` names the architecture (:mod:`fastdfkd_plugin.synthesis.generator`):
    ``compact`` is sized to the teacher's cost, ``paper`` is the paper's CIFAR network.
    The first batch pays for a warm-up of ``warmup_tasks`` meta-learning tasks of
    ``warmup_batch_size`` images (no adversarial term): many small tasks, because the
    number of meta steps matters more than their batch size. Each warm-up task takes
    ``warmup_steps`` inner steps (default ``steps``); fewer make the first batch cheaper
    and the BN fit looser (docs/benchmarks/warmup_steps.md). The warm-up draws from its own
    seeded random streams, so its result depends only on the teacher, the settings and
    the seed: with ``cache=True`` (the default) it is stored in the warm-state cache
    (:mod:`fastdfkd_plugin.sources.cache`) and every later source for the same teacher and
    settings, in any command, starts warm, with bit-identical results. ``save_state``
    and ``state_path=`` move a warm state by hand. Call :meth:`set_student` to aim the
    adversarial term at a student. ``compile`` (off by default) runs each inner step
    as one ``torch.compile``d graph; on a CPU its minutes of compiling outweigh a set's
    seconds, and it has not yet run on a GPU (docs/performance.md#a-compiled-inner-step).
    Compiled sets are not bit-identical to eager ones, so a compiled warm-up is cached apart.
    """

    name = "fastdfkd"
    options = (
        SourceOption(("--synthesis-steps", "--steps"), "steps", "optimisation steps per synthetic batch (k, default 5)",
                     type=positive),
        SourceOption(("--warmup-tasks",), "warmup_tasks", "meta-learning tasks before the first batch (default 40)", type=int),
        SourceOption(("--warmup-steps",), "warmup_steps", "optimisation steps per warm-up task (default: k); fewer make "
                                                          "the first batch cheaper and fit the BN statistics less well",
                     type=positive),
        SourceOption(("--generator",), "generator", "generator architecture: compact (default, sized to the teacher), "
                                                    "paper (the paper's CIFAR network), or one a plugin registers"),
        *InvertingSource.options,
        SourceOption(("--generator-state",), "state_path", "load a warm generator state saved for this teacher "
                                                           "(skips the warm-up)"),
        SourceOption(("--compile",), "compile", "run each synthesis step as a torch.compile'd graph (off by default: "
                                                "compiling takes minutes on a CPU and has not been measured on a GPU; it "
                                                "pays off in long runs such as distillation)", const=True),
        SourceOption(("--no-cache",), "cache", "neither use nor fill the cache of warm generators ($FASTDFKD_CACHE_DIR, "
                                               "default ~/.cache/fastdfkd)", const=False),
    )

    def __init__(
        self,
        teacher: Teacher,
        *,
        steps: int = 5,
        warmup_tasks: int = 40,
        meta_update: MetaUpdate = "fomaml",
        lr_g: float | None = None,
        lr_z: float | None = None,
        generator: str = "compact",
        latent_dim: int = LATENT_DIM,
        bn_momentum: float = 0.9,
        warmup_batch_size: int = 16,
        warmup_steps: int | None = None,
        state_path: str | Path | None = None,
        cache: bool = True,
        compile: bool = False,
        **common: Any,
    ) -> None:
        """``common``: the inversion options (``loss_weights``, ``flip``, ``prior``, ``shift``) and every source's."""
        super().__init__(teacher, bn_momentum=bn_momentum, **common)
        warmup_steps = steps if warmup_steps is None else warmup_steps
        if steps < 1 or warmup_steps < 1 or warmup_tasks < 0:
            raise FastDFKDError(f"steps and warmup_steps must be ≥ 1 and warmup_tasks ≥ 0, got steps={steps}, "
                                f"warmup_steps={warmup_steps}, warmup_tasks={warmup_tasks}")
        self.warmup_tasks, self.warmup_batch_size, self.warmup_steps = warmup_tasks, warmup_batch_size, warmup_steps
        self.cache = cache
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            network = make_generator(generator, self.input_shape, self.teacher.macs_per_image, latent_dim).to(self.device)
        self.generator_name = generator
        self.compile = compile
        self.synthesizer = MetaSynthesizer(network, self.objective, self.rng, steps, lr_g, lr_z, meta_update,
                                           compile=compile)
        self.warmup_seconds = 0.0
        if state_path is not None:
            self.load_state(state_path)

    def set_student(self, student: nn.Module | None, output_transform: OutputTransform | None = None) -> None:
        """Aim the adversarial term at ``student`` (after warm-up); ``None`` switches it off.

        ``output_transform`` picks the student's logits when it returns more than a tensor.
        """
        if student is self.teacher.model:
            raise FastDFKDError("the student is the teacher itself, which silently disables the adversarial term; pass a separate student")
        self.objective.student = student
        self.objective.student_output_transform = output_transform

    def share_across_processes(self) -> dict[str, nn.Module]:
        """Start every process from rank 0's meta-generator and average every later meta step and BN-momentum update."""
        distributed.share_meta_generator(self.synthesizer)
        return {"meta-generator": self.synthesizer.generator}

    def probe_pixels(self, batch_size: int) -> torch.Tensor:
        """A batch from a copy of the meta-generator (its BatchNorm statistics would move), as an inner step makes it."""
        generator = copy.deepcopy(self.synthesizer.generator)
        z = torch.randn(batch_size, generator.latent_dim, generator=self.rng, device=self.rng.device).to(self.device)
        with self.objective.autocast(self.device):
            return generator(z.requires_grad_()).float()

    def limit_batch(self, largest: int) -> None:
        """Warm-up tasks too stay within ``largest`` images (a smaller warm-up batch is another warm state in the cache)."""
        self.warmup_batch_size = min(self.warmup_batch_size, largest)

    @property
    def warmed_up(self) -> bool:
        return self.synthesizer.tasks_done >= self.warmup_tasks

    def synthesize_pixels(self, labels: torch.Tensor) -> torch.Tensor:
        if not self.warmed_up:
            self.warm_up()
        with self.objective.attached():
            return self._task(labels, adversarial=True)

    def warm_up(self) -> None:
        """Run the remaining warm-up tasks, or take the result from the cache; then cache it."""
        started = time.perf_counter()
        fresh = self.synthesizer.tasks_done == 0
        description = self.warm_state_description()
        cached = cache.load(description, self.teacher.info.fingerprint, self.device) if self.cache and fresh else None
        if cached is not None:
            self.synthesizer.load_state_dict(cached[0])
            announce(f"fastdfkd: warm generator from the cache ({self.warmup_tasks} tasks, {cached[1]}); no warm-up",
                     self.progress)
            return
        if not fresh:
            log.warning("the loaded generator state holds %d warm-up tasks; continuing the warm-up to %d (warmup_tasks)",
                        self.synthesizer.tasks_done, self.warmup_tasks)
        with self.objective.attached():
            self._warm_up_tasks()
        self.warmup_seconds += time.perf_counter() - started
        log.info("fastdfkd warm-up: %d tasks in %.1f s", self.warmup_tasks, self.warmup_seconds)
        if self.cache and fresh and distributed.rank() == 0:
            saved = cache.save(description, self.teacher.info.fingerprint, self.synthesizer.state_dict())
            if saved is not None:
                announce(f"fastdfkd: cached the warm generator ({saved}); later runs for this teacher skip the warm-up",
                         self.progress)

    def _warm_up_tasks(self) -> None:
        """Warm-up task t draws from the stream seeded by (seed, t), never from the source's own stream."""
        size = self.warmup_batch_size
        stream = self.rng.get_state()
        try:
            bar = tqdm(range(self.synthesizer.tasks_done, self.warmup_tasks), desc="fastdfkd warm-up", unit="task",
                       disable=None if self.progress else True, leave=False)
            for task in bar:
                self.rng.manual_seed(WARMUP_SEED + 100_003 * self.seed + task)
                self._task(self.draw_targets(size, task * size), adversarial=False, steps=self.warmup_steps)
        finally:
            self.rng.set_state(stream)

    def warm_state_description(self) -> dict[str, Any]:
        """Everything the warm state depends on: its key in the cache."""
        return {
            "teacher": self.teacher.info.fingerprint, "input_shape": list(self.input_shape),
            "mean": self.space.mean_values, "std": self.space.std_values, "seed": self.seed,
            "warmup_batch_size": self.warmup_batch_size, "device": self.device.type,
            "autocast": str(self.autocast_dtype), **self.run_settings(),
            **({"compile": True} if self.compile else {}),  # a compiled warm-up is not bit-identical to an eager one
        }

    def _task(self, labels: torch.Tensor, adversarial: bool, steps: int | None = None) -> torch.Tensor:
        try:
            return self.synthesizer.task(labels, adversarial=adversarial, steps=steps).pixels
        except NonFiniteLoss as exc:
            raise NonFiniteBatch(str(exc)) from exc

    def settings(self) -> dict[str, Any]:
        s = self.synthesizer
        return {
            "steps": s.steps, "lr_g": s.lr_g, "lr_z": s.lr_z, "meta_update": s.meta_update,
            "warmup_tasks": self.warmup_tasks, "warmup_batch_size": self.warmup_batch_size,
            "warmup_steps": self.warmup_steps, "warmup_seconds": round(self.warmup_seconds, 3),
            "generator": self.generator_name,
            "generator_parameters": sum(p.numel() for p in s.generator.parameters()),
            "latent_dim": s.generator.latent_dim, **super().settings(),
        }

    # -- reuse of a warm meta-generator -----------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "synthesizer": self.synthesizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.synthesizer.load_state_dict(state["synthesizer"])

    def save_state(self, path: str | Path) -> None:
        """Save the meta-generator, its optimiser and BN momentum, tied to this teacher."""
        Checkpoint(GENERATOR_STATE, self.teacher.info.fingerprint, self._state_settings(), self.state_dict()).save(path)

    def load_state(self, path: str | Path) -> None:
        """Resume from :meth:`save_state`; refuse a state made for another teacher, shape or generator."""
        saved = Checkpoint.load(path, GENERATOR_STATE, self.teacher.info.fingerprint, self.device)
        saved.check_settings(self._state_settings())
        self.load_state_dict(saved.state)

    def _state_settings(self) -> dict[str, Any]:
        """What a saved generator state must share with the source that loads it."""
        return {"input_shape": list(self.input_shape), "generator": self.generator_name}
