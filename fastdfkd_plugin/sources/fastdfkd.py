"""The ``fastdfkd`` source: batches from the meta-learned generator, k steps each."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import cache, distributed, plugins
from ..errors import FastDFKDError
from ..hookspecs import hookimpl
from ..io import atomic_path, load_torch
from ..synthesis.generator import LATENT_DIM
from ..synthesis.meta import MetaSynthesizer, MetaUpdate, NonFiniteLoss
from ..synthesis.objective import LossWeights
from ..teacher import OutputTransform, Teacher
from .base import DataSource, NonFiniteBatch

log = logging.getLogger(__name__)

WARMUP_SEED = 0x5EED  # warm-up task t of seed s draws from the stream seeded WARMUP_SEED + 100003·s + t


class FastDFKDSource(DataSource):
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
    (:mod:`fastdfkd_plugin.cache`) and every later source for the same teacher and
    settings, in any command, starts warm, with bit-identical results. ``save_state``
    and ``state_path=`` move a warm state by hand. Call :meth:`set_student` to aim the
    adversarial term at a student.
    """

    name = "fastdfkd"

    def __init__(
        self,
        teacher: Teacher | nn.Module,
        input_shape: tuple[int, int, int] | None = None,
        *,
        steps: int = 5,
        warmup_tasks: int = 40,
        meta_update: MetaUpdate = "fomaml",
        lr_g: float | None = None,
        lr_z: float | None = None,
        generator: str = "compact",
        latent_dim: int = LATENT_DIM,
        loss_weights: LossWeights | None = None,
        bn_momentum: float = 0.9,
        warmup_batch_size: int = 16,
        warmup_steps: int | None = None,
        flip: bool = True,
        prior: str = "auto",
        shift: int | None = None,
        state_path: str | Path | None = None,
        cache: bool = True,
        **common: Any,
    ) -> None:
        super().__init__(teacher, input_shape, **common)
        warmup_steps = steps if warmup_steps is None else warmup_steps
        if steps < 1 or warmup_steps < 1 or warmup_tasks < 0:
            raise FastDFKDError(f"steps and warmup_steps must be ≥ 1 and warmup_tasks ≥ 0, got steps={steps}, "
                                f"warmup_steps={warmup_steps}, warmup_tasks={warmup_tasks}")
        self.warmup_tasks, self.warmup_batch_size, self.warmup_steps = warmup_tasks, warmup_batch_size, warmup_steps
        self.bn_momentum, self.flip = bn_momentum, flip
        self.shift = self.pixel_shift(shift)
        self.cache = cache
        self.objective = self.inversion_objective(loss_weights, bn_momentum, flip, prior, self.shift)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            network = plugins.make_generator(generator, self.input_shape, self.teacher.macs_per_image, latent_dim).to(self.device)
        self.generator_name = generator
        self.synthesizer = MetaSynthesizer(network, self.objective, self.rng, steps, lr_g, lr_z, meta_update)
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
        key = cache.state_key(self.warm_state_description())
        cached = cache.load(key, self.teacher.info.fingerprint, self.device) if self.cache and fresh else None
        if cached is not None:
            self.synthesizer.load_state_dict(cached[0])
            self._say(f"fastdfkd: warm generator from the cache ({self.warmup_tasks} tasks, {cached[1]}); no warm-up")
            return
        if not fresh:
            log.warning("the loaded generator state holds %d warm-up tasks; continuing the warm-up to %d (warmup_tasks)",
                        self.synthesizer.tasks_done, self.warmup_tasks)
        with self.objective.attached():
            self._warm_up_tasks()
        self.warmup_seconds += time.perf_counter() - started
        log.info("fastdfkd warm-up: %d tasks in %.1f s", self.warmup_tasks, self.warmup_seconds)
        if self.cache and fresh and distributed.rank() == 0:
            saved = cache.save(key, self.teacher.info.fingerprint, self.synthesizer.state_dict())
            if saved is not None:
                self._say(f"fastdfkd: cached the warm generator ({saved}); later runs for this teacher skip the warm-up")

    def _warm_up_tasks(self) -> None:
        """Warm-up task t draws from the stream seeded by (seed, t), never from the source's own stream."""
        size = self.warmup_batch_size
        stream = self.rng.get_state()
        try:
            bar = tqdm(range(self.synthesizer.tasks_done, self.warmup_tasks), desc="fastdfkd warm-up", unit="task",
                       disable=None if self.progress else True, leave=False)
            for task in bar:
                self.rng.manual_seed(WARMUP_SEED + 100_003 * self.seed + task)
                self._task(self.balanced_labels(size, task * size), adversarial=False, steps=self.warmup_steps)
        finally:
            self.rng.set_state(stream)

    def warm_state_description(self) -> dict[str, Any]:
        """Everything the warm state depends on: its key in the cache."""
        return {
            "teacher": self.teacher.info.fingerprint, "input_shape": list(self.input_shape),
            "mean": self.space.mean_values, "std": self.space.std_values, "seed": self.seed,
            "warmup_batch_size": self.warmup_batch_size, "device": self.device.type,
            "autocast": str(self.autocast_dtype), **self.run_settings(),
        }

    def _say(self, message: str) -> None:
        log.info(message)
        if self.progress:
            tqdm.write(message, file=sys.stderr)

    def _task(self, labels: torch.Tensor, adversarial: bool, steps: int | None = None) -> torch.Tensor:
        try:
            return self.synthesizer.task(labels, adversarial=adversarial, steps=steps).pixels
        except NonFiniteLoss as exc:
            raise NonFiniteBatch(str(exc)) from exc

    def settings(self) -> dict[str, Any]:
        s = self.synthesizer
        w = self.objective.weights
        return {
            "steps": s.steps, "lr_g": s.lr_g, "lr_z": s.lr_z, "meta_update": s.meta_update,
            "warmup_tasks": self.warmup_tasks, "warmup_batch_size": self.warmup_batch_size,
            "warmup_steps": self.warmup_steps, "warmup_seconds": round(self.warmup_seconds, 3),
            "bn_momentum": self.bn_momentum, "prior": self.objective.prior.name,
            "loss_weights": {"prior": w.prior, "oh": w.oh, "adv": w.adv},
            "generator": self.generator_name,
            "generator_parameters": sum(p.numel() for p in s.generator.parameters()),
            "latent_dim": s.generator.latent_dim, "flip": self.flip, "shift": self.shift,
        }

    # -- reuse of a warm meta-generator -----------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "synthesizer": self.synthesizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.synthesizer.load_state_dict(state["synthesizer"])

    def save_state(self, path: str | Path) -> None:
        """Save the meta-generator, its optimiser and BN momentum, tied to this teacher."""
        state = {"teacher_fingerprint": self.teacher.info.fingerprint, "input_shape": list(self.input_shape),
                 "generator_name": self.generator_name, **self.state_dict()}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def load_state(self, path: str | Path) -> None:
        """Resume from :meth:`save_state`; refuse a state made for another teacher or shape."""
        state = load_torch(path, "generator state", missing="omit it to warm up from scratch",
                           unreadable="delete it and warm up again", map_location=self.device)
        if not isinstance(state, dict) or "synthesizer" not in state:
            raise FastDFKDError(f"{path} is not a fastdfkd generator state; save one with --save-generator-state")
        if state.get("teacher_fingerprint") != self.teacher.info.fingerprint:
            raise FastDFKDError(
                f"generator state {path} was made for another teacher (fingerprint {state.get('teacher_fingerprint')}, "
                f"this teacher is {self.teacher.info.fingerprint}); use a state saved for this teacher or none"
            )
        if tuple(state["input_shape"]) != self.input_shape:
            raise FastDFKDError(f"generator state {path} is for input shape {tuple(state['input_shape'])}, not {self.input_shape}")
        saved = state.get("generator_name", "paper")  # states from before the choice of generator hold the paper's
        if saved != self.generator_name:
            raise FastDFKDError(f"generator state {path} holds a {saved!r} generator, not {self.generator_name!r}; "
                                f"pass generator={saved!r} (--generator {saved}) or warm up a new one")
        self.load_state_dict(state)


@hookimpl
def fastdfkd_register_sources(register: Callable[[type[DataSource]], None]) -> None:
    register(FastDFKDSource)
