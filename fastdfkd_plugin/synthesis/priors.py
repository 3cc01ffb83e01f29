"""Inversion priors: what "looks like the training data" means to a given teacher.

A prior watches the frozen teacher's layers (forward hooks, only while synthesising)
and turns what they see into one loss term, which :class:`~.objective.InversionObjective`
adds to the class and adversarial terms. Which prior applies depends on the layers:

* ``batchnorm``: every BatchNorm layer's input statistics against its running
  statistics (the paper's term), the strongest signal where it exists;
* ``transformer``: for LayerNorm/attention models, the entropy of the similarity
  between the patches each attention block outputs (PSAQ-ViT, Li et al. 2022): real
  images give diverse patch relations, inverted noise gives uniform ones; plus the
  image prior below;
* ``generic``: for any other network (GroupNorm, BN folded into the convolutions at
  export): the inputs' per-channel statistics against the normalisation the model
  expects (mean 0, variance 1 after ``--mean/--std``) and a total-variation image prior.

Priors are registered through the ``fastdfkd_register_priors`` hook, the built-ins (from
:mod:`fastdfkd_plugin.builtin`) the same way as third-party ones; :func:`fastdfkd_plugin.synthesis.registry.make_prior`
builds one by name. ``prior="auto"`` takes the applicable prior with the highest ``rank``;
``prior="auto-calibration"`` does the same among the priors whose images calibrate
quantizers well (``suits_calibration``), which leaves out ``batchnorm``; a name overrides both.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FastDFKDError
from ..teacher.attention import attention_modules
from ..teacher.teacher import Teacher

Hook = Callable[[nn.Module, tuple[Any, ...], Any], None]
Statistics = list[Any]


class Prior(ABC):
    """One inversion prior. Subclasses give ``name``, ``weight`` (the term's default weight), ``rank``,
    :meth:`applies_to`, and :meth:`loss`; those that watch layers return them from :meth:`hooks`.

    The statistics methods let a prior keep a population average across batches (the
    BatchNorm prior's momentum); the defaults keep nothing.
    """

    name: ClassVar[str]
    weight: ClassVar[float]
    rank: ClassVar[int] = 0
    suits_calibration: ClassVar[bool] = True  # whether prior="auto-calibration" may choose it

    def __init__(self, teacher: Teacher, momentum: float) -> None:
        self.teacher = teacher
        self.momentum = momentum

    @classmethod
    @abstractmethod
    def applies_to(cls, teacher: Teacher) -> bool:
        """Whether this prior can judge inputs for ``teacher`` (used by ``prior="auto"`` and to refuse a bad choice)."""

    @classmethod
    def description(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def hooks(self) -> list[tuple[nn.Module, Hook]]:
        """(layer, forward hook) pairs registered while synthesising."""
        return []

    @abstractmethod
    def loss(self, inputs: torch.Tensor) -> torch.Tensor:
        """The term for the normalised ``inputs`` the teacher has just seen (the hooks have fired)."""

    def batch_statistics(self) -> Statistics:
        """What the last batch contributes to the population average (see :meth:`update_momentum`)."""
        return []

    def update_momentum(self, statistics: Statistics) -> None:
        """Fold a handed-out batch's statistics into the population average."""

    def momentum_state(self) -> Statistics:
        return []

    def load_momentum_state(self, state: Statistics) -> None:
        """Restore :meth:`momentum_state` (from a saved or cached generator state)."""


# -- batchnorm ---------------------------------------------------------------------------------

class ChannelStatistics(torch.autograd.Function):
    """Per-channel mean and biased variance of an N×C×… tensor (at least float32), with a one-pass backward.

    Same values as ``x.mean(dims), x.var(dims, unbiased=False)``, from two plain sums
    (E[x²] − E[x]²): on CPU ``var`` over the batch and spatial axes costs more than the
    convolution it follows, and its autograd backward several passes more. This runs
    on every teacher BatchNorm layer at every synthesis step, so both sums reduce the
    contiguous last axis of an N×C×(rest) view first (the sum of squares as a squared
    norm, without an x² temporary): 2–3.5× faster on CPU than summing over (0, 2, 3).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        rows = x.reshape(x.shape[0], x.shape[1], -1)
        count = rows.shape[0] * rows.shape[2]
        dtype = torch.promote_types(x.dtype, torch.float32)  # bf16 under autocast is summed in float32
        mean = rows.sum(2, dtype=dtype).sum(0) / count
        squares = torch.linalg.vector_norm(rows, 2, dim=2, dtype=dtype).square().sum(0)
        var = (squares / count - mean * mean).clamp_min(0)
        ctx.save_for_backward(rows, mean)
        ctx.input_shape, ctx.input_dtype = x.shape, x.dtype
        return mean, var

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_var: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        rows, mean = ctx.saved_tensors
        count = rows.shape[0] * rows.shape[2]
        scale = 2 * grad_var / count  # d var / dx = 2 (x − mean) / count
        shift = grad_mean / count - scale * mean
        grad = torch.addcmul(shift.view(1, -1, 1), rows.to(scale.dtype), scale.view(1, -1, 1))
        return grad.view(ctx.input_shape).to(ctx.input_dtype)


class BatchNormMatcher:
    """Forward hook on one BatchNorm layer; holds its momentum average between batches."""

    def __init__(self, layer: nn.modules.batchnorm._BatchNorm, momentum: float) -> None:
        self.layer = layer
        self.momentum = momentum
        self.average: tuple[torch.Tensor, torch.Tensor] | None = None
        self.current: tuple[torch.Tensor, torch.Tensor] | None = None
        self.loss: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        mean, var = ChannelStatistics.apply(inputs[0])
        self.current = (mean.detach(), var.detach())
        if self.average is not None and self.momentum > 0:
            mean = (1 - self.momentum) * mean + self.momentum * self.average[0]
            var = (1 - self.momentum) * var + self.momentum * self.average[1]
        self.loss = torch.norm(mean - module.running_mean, 2) + torch.norm(var - module.running_var, 2)

    def update_average(self, stats: tuple[torch.Tensor, torch.Tensor]) -> None:
        if self.average is None:
            self.average = stats
        else:
            m = self.momentum
            self.average = (m * self.average[0] + (1 - m) * stats[0], m * self.average[1] + (1 - m) * stats[1])


class BatchNormPrior(Prior):
    """BatchNorm running statistics: each BN layer's input mean and variance against what it saw in training."""

    name = "batchnorm"
    weight = 10.0
    rank = 30
    # Its images give activation ranges about as wide as real ones (×0.84–1.07 per ResNet-20 stage),
    # while 4-bit activations want ranges tighter than real; the generic prior's are (×0.55–0.88) and
    # calibrate W4A4 better (docs/benchmarks/activation_ranges_resnet20.md).
    suits_calibration = False

    def __init__(self, teacher: Teacher, momentum: float) -> None:
        super().__init__(teacher, momentum)
        self.matchers = [BatchNormMatcher(layer, momentum) for layer in teacher.batchnorm_layers()]

    @classmethod
    def applies_to(cls, teacher: Teacher) -> bool:
        return teacher.info.num_batchnorm > 0

    def hooks(self) -> list[tuple[nn.Module, Hook]]:
        return [(m.layer, m) for m in self.matchers]

    def loss(self, inputs: torch.Tensor) -> torch.Tensor:
        return sum((m.loss for m in self.matchers), torch.zeros((), device=inputs.device))

    def batch_statistics(self) -> Statistics:
        return [m.current for m in self.matchers]

    def update_momentum(self, statistics: Statistics) -> None:
        for matcher, layer_stats in zip(self.matchers, statistics):
            if layer_stats is not None:
                matcher.update_average(layer_stats)

    def momentum_state(self) -> Statistics:
        return [m.average for m in self.matchers]

    def load_momentum_state(self, state: Statistics) -> None:
        for matcher, average in zip(self.matchers, state):
            matcher.average = average


# -- generic -----------------------------------------------------------------------------------

def input_statistics_loss(inputs: torch.Tensor) -> torch.Tensor:
    """How far the normalised inputs' per-channel mean and variance are from 0 and 1 (what the normalisation implies)."""
    mean, var = ChannelStatistics.apply(inputs)
    return torch.norm(mean, 2) + torch.norm(var - 1, 2)


def total_variation(inputs: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (DeepInversion's image prior): penalises pixel noise."""
    return (inputs[..., 1:, :] - inputs[..., :-1, :]).pow(2).mean() + (inputs[..., :, 1:] - inputs[..., :, :-1]).pow(2).mean()


class GenericPrior(Prior):
    """Input statistics and smoothness: for any teacher, including BN-free CNNs and exports with BN folded away."""

    name = "generic"
    # Chosen on held-out train_10k (BN-folded ResNet-20, 3 seeds, W4A4): ×3 beat ×1 by 2–3 points. Kept for 4-bit sets:
    # a later screen preferred 0.3 on that teacher but put it 13–14 points below 3 on the BN-folded ResNet-56
    # (docs/benchmarks/bn_free_resnet56_folded_heldout.md). 8-bit calibration sets use 0.3
    # (docs/calibration_results.md#which-prior-for-calibration-sets).
    weight = 3.0
    rank = 10
    smoothness = 1.0  # weight of total variation against the input statistics

    @classmethod
    def applies_to(cls, teacher: Teacher) -> bool:
        return True

    def loss(self, inputs: torch.Tensor) -> torch.Tensor:
        return input_statistics_loss(inputs) + self.smoothness * total_variation(inputs)


# -- transformer -------------------------------------------------------------------------------

def patch_similarity_entropy(tokens: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """Mean over images of the entropy of the cosine similarities between distinct token pairs (N×T×D in).

    The density is a linearly interpolated histogram over [−1, 1]: each similarity is
    split between its two nearest bins, so the entropy is differentiable in the tokens.
    PSAQ-ViT's Gaussian kernel touches every bin with every pair; on a 65-token ViT block
    that cost 30× as much (0.38 s against 0.013 s forward and backward for 64 images, one
    core), more than the teacher's own pass.
    """
    unit = F.normalize(tokens.float(), dim=-1)
    first, second = torch.triu_indices(tokens.shape[1], tokens.shape[1], 1, device=tokens.device)
    similarity = (unit @ unit.transpose(1, 2))[:, first, second]  # N × pairs; the diagonal is always 1
    position = (similarity.clamp(-1, 1) + 1) / 2 * (bins - 1)
    lower = position.detach().floor().clamp(max=bins - 2)
    upper_share = position - lower
    index = lower.long()
    density = similarity.new_zeros(len(tokens), bins).scatter_add(1, index, 1 - upper_share).scatter_add(1, index + 1, upper_share)
    density = density / density.sum(1, keepdim=True)
    return -(density * torch.log(density + 1e-8)).sum(1).mean()


class TransformerPrior(GenericPrior):
    """Patch-similarity entropy of every attention block's output (PSAQ-ViT), plus the generic image prior."""

    name = "transformer"
    weight = 1.0
    rank = 20

    def __init__(self, teacher: Teacher, momentum: float) -> None:
        super().__init__(teacher, momentum)
        self.layers = attention_modules(teacher.model)
        self.outputs: dict[int, torch.Tensor] = {}  # per layer, overwritten by each forward like the BN matchers

    @classmethod
    def applies_to(cls, teacher: Teacher) -> bool:
        has_layernorm = any(isinstance(m, nn.LayerNorm) for m in teacher.model.modules())
        return has_layernorm and bool(attention_modules(teacher.model))

    def hooks(self) -> list[tuple[nn.Module, Hook]]:
        return [(layer, functools.partial(self._keep, index)) for index, layer in enumerate(self.layers)]

    def _keep(self, index: int, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        tokens = output[0] if isinstance(output, (tuple, list)) else output
        if isinstance(module, nn.MultiheadAttention) and not module.batch_first:
            tokens = tokens.transpose(0, 1)
        if isinstance(tokens, torch.Tensor) and tokens.dim() == 3:
            self.outputs[index] = tokens

    def loss(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs, self.outputs = list(self.outputs.values()), {}
        if not outputs:
            raise FastDFKDError("the transformer prior saw no N×tokens×features attention output; "
                                "choose prior 'generic' for this teacher")
        entropy = torch.stack([patch_similarity_entropy(tokens) for tokens in outputs]).mean()
        return super().loss(inputs) - entropy

