"""Calibration sets for the grid you quantize to: the prior and weights the quantize commands pick, for scripts too.

How wide a quantizer's activation grid is changes which synthetic images calibrate it best,
so the choice lives here, below every caller: ``quantize-onnx``, ``quantize-torch``,
``quantize-brevitas``, ``fastdfkd synthesize --activation-bits`` and :func:`synthetic_set`
all pick the same source options for the same number of bits.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..synthesis.objective import LossWeights
from ..synthesis.priors import GenericPrior
from ..synthesis.registry import prior_class
from ..teacher.teacher import Teacher
from .base import SyntheticSet
from .registry import get_source, source_class

LOW_BIT_ACTIVATIONS = 4  # activation grids of this many bits or fewer are calibrated from prior="auto-calibration"
# The generic prior's weight (3 by default) in sets for wider activation grids. Chosen on held-out train_10k images
# (docs/benchmarks/bn_free_resnet20_folded_heldout.md; docs/calibration_results.md#which-prior-for-calibration-sets).
WIDE_GRID_GENERIC_WEIGHT = 0.3

def calibration_source_options(source: str, activation_bits: int, teacher: Teacher,
                               options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``options`` for source ``source``, with the calibration defaults filled in where the caller left them out.

    For activations of :data:`LOW_BIT_ACTIVATIONS` bits or fewer that is ``prior="auto-calibration"``:
    a 16-level grid wants ranges tighter than real images give, and the generic prior's images give
    them, while the BatchNorm prior's are about as wide as real ones (ResNet-20 W4A4 on test_a: +2.2 / +2.3
    with MinMax / Percentile). At 8 bits the tighter ranges cost 1.5–2 points, so the source's own
    prior stays; where that is the generic prior (a teacher without BatchNorm) it is weighted
    :data:`WIDE_GRID_GENERIC_WEIGHT`, not 3: on the BN-folded ResNet-20 it scored higher on held-out images,
    and on test_a it moved W4A8 from 1.7 points below real images to within 0.9.
    """
    options = dict(options or {})
    if "prior" not in source_class(source).option_names():
        return options
    if activation_bits <= LOW_BIT_ACTIVATIONS:
        return {"prior": "auto-calibration", **options}
    weights = options.get("loss_weights") or LossWeights()
    if weights.prior is None and prior_class(options.get("prior", "auto"), teacher) is GenericPrior:
        options["loss_weights"] = replace(weights, prior=WIDE_GRID_GENERIC_WEIGHT)
    return options


def synthetic_set(teacher: Teacher, num_samples: int, batch_size: int = 64, *, source: str = "fastdfkd",
                  activation_bits: int | None = None, **options: Any) -> SyntheticSet:
    """A synthetic set from ``source`` for ``teacher``; with ``activation_bits``, the one that calibrates that grid best.

    ``activation_bits=4`` gives exactly the set ``quantize-onnx`` calibrates 4-bit activations on (same seed,
    same samples): the ``auto-calibration`` prior, whose tighter ranges suit a 16-level grid, where the
    default BatchNorm prior's are as wide as real images'. Without ``activation_bits`` it is
    ``get_source(source, teacher, **options).synthetic_set(num_samples, batch_size)``. ``options`` are the
    source's (``seed``, ``steps``, ``prior``, ...); one you give is kept over the calibration default.
    """
    if activation_bits is not None:
        options = calibration_source_options(source, activation_bits, teacher, options)
    return get_source(source, teacher, **options).synthetic_set(num_samples, batch_size)
