"""What the sources that invert the teacher share: the inversion loss, its prior, and how batches are augmented.

``fastdfkd`` and ``deepinversion`` differ in what they optimise (a meta-learned generator,
or the pixels themselves) but minimise the same loss (:class:`~..synthesis.objective.InversionObjective`)
on batches shifted by up to ``shift`` pixels and, with ``flip``, mirrored; so they take
the same options for it, declared here once.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import FastDFKDError
from ..synthesis.augment import CropFlip, default_shift
from ..synthesis.objective import InversionObjective, LossWeights
from ..synthesis.registry import make_prior
from ..teacher.teacher import Teacher
from .base import DataSource, SourceOption


class InvertingSource(DataSource):
    """A source whose batches minimise the inversion loss against the teacher (prior + CE, + adversarial)."""

    options = (
        SourceOption(("--prior",), "prior", "inversion prior: auto (batchnorm for BN models, transformer for LayerNorm/"
                                            "attention ones, else generic), auto-calibration (the same without batchnorm; "
                                            "the quantize commands' default for 4-bit activations) or a name (see `fastdfkd priors`)"),
        SourceOption(("--no-flip",), "flip", "no mirrored images while inverting, for a teacher trained without horizontal "
                                             "flips (digits, text)", const=False),
        SourceOption(("--max-shift",), "shift", "largest random shift in pixels while inverting (default an eighth of the "
                                                "side); 0 for a teacher trained on centred images without translation "
                                                "(digits, faces, documents)", type=int),
    )

    def __init__(
        self,
        teacher: Teacher,
        *,
        loss_weights: LossWeights | None = None,
        bn_momentum: float = 0.0,
        flip: bool = True,
        prior: str = "auto",
        shift: int | None = None,
        **common: Any,
    ) -> None:
        super().__init__(teacher, **common)
        if shift is not None and shift < 0:
            raise FastDFKDError(f"shift must be 0 (no shifts) or more pixels, got {shift}")
        self.bn_momentum, self.flip = bn_momentum, flip
        self.shift = default_shift(self.input_shape[1]) if shift is None else shift
        self.objective = InversionObjective(self.teacher, make_prior(prior, self.teacher, bn_momentum), self.rng,
                                            loss_weights, CropFlip(self.shift, flip), self.autocast_dtype)

    def probe_step(self, batch_size: int) -> None:
        """One step of the inversion loss and its backward at ``batch_size``, on the source's random stream, then restored."""
        stream = self.rng.get_state()
        try:
            with self.teacher.frozen(), self.objective.attached():
                pixels = self.probe_pixels(batch_size)
                self.objective(pixels, self.draw_targets(batch_size, 0), adversarial=False).backward()
        finally:
            self.rng.set_state(stream)

    def probe_pixels(self, batch_size: int) -> torch.Tensor:
        """Pixels that carry a gradient, as the source's optimisation makes them (here: the pixels themselves)."""
        return torch.rand((batch_size, *self.input_shape), generator=self.rng, device=self.device).requires_grad_()

    def settings(self) -> dict[str, Any]:
        weights = self.objective.weights
        return {"bn_momentum": self.bn_momentum, "prior": self.objective.prior.name,
                "loss_weights": {"prior": weights.prior, "oh": weights.oh, "adv": weights.adv},
                "flip": self.flip, "shift": self.shift}
