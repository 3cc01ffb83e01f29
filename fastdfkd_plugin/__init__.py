"""fastdfkd-plugin: data from the model itself, for compression toolkits that want data.

>>> from fastdfkd_plugin import Teacher, get_source, synthetic_set
>>> teacher = Teacher(model, (3, 32, 32), mean=MEAN, std=STD)   # built once, passed everywhere
>>> calibration = get_source("fastdfkd", teacher).synthetic_set(num_samples=512, batch_size=64)
>>> four_bit = synthetic_set(teacher, num_samples=512, activation_bits=4)   # what quantize-onnx calibrates 4-bit activations on

The names below are imported on first use, so ``import fastdfkd_plugin`` (and the
``fastdfkd`` command's start-up) does not pay for torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# The public API: name → the module that defines it. Scripts, plugins and the benchmarks import from here
# (and from fastdfkd_plugin.adapters.<toolkit>); everything else is free to move.
_EXPORTS = {
    "Batch": ".sources.base",
    "Checkpoint": ".runtime.checkpoint",
    "DataSource": ".sources.base",
    "DistillConfig": ".training.distillation",
    "Distiller": ".training.distillation",
    "FastDFKDError": ".errors",
    "Fidelity": ".evaluation.fidelity",
    "LossWeights": ".synthesis.objective",
    "SourceOption": ".sources.base",
    "SyntheticSet": ".sources.base",
    "Teacher": ".teacher.teacher",
    "agreement": ".evaluation.metrics",
    "atomic_path": ".runtime.io",
    "calibration_source_options": ".sources.calibration",
    "compact_generator": ".synthesis.generator",
    "distill": ".training.distillation",
    "distill_datafree": ".training.distillation",
    "fidelity": ".evaluation.fidelity",
    "get_plugin_manager": ".hooks.manager",
    "get_source": ".sources.registry",
    "held_out_set": ".evaluation.fidelity",
    "hookimpl": ".hooks.hookspecs",
    "image_grid": ".evaluation.preview",
    "Classification": ".teacher.tasks",
    "GenericOutputs": ".teacher.tasks",
    "PredictionTask": ".teacher.tasks",
    "Segmentation": ".teacher.tasks",
    "Sequence": ".teacher.tasks",
    "kd_loader": ".training.finetune",
    "kd_loss": ".training.distillation",
    "keep_freed_memory": ".runtime.memory",
    "list_sources": ".sources.registry",
    "load_compressed": ".evaluation.compressed",
    "load_model": ".teacher.loading",
    "load_onnx_model": ".teacher.onnx.graph",
    "load_weights": ".teacher.loading",
    "make_generator": ".synthesis.registry",
    "make_prior": ".synthesis.registry",
    "reestimate_batchnorm": ".training.reestimate",
    "relative_accuracy": ".evaluation.fidelity",
    "resolve_device": ".runtime.devices",
    "set_quality": ".evaluation.quality",
    "synthetic_set": ".sources.calibration",
    "write_png": ".evaluation.preview",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .errors import FastDFKDError
    from .evaluation.compressed import load_compressed
    from .evaluation.fidelity import Fidelity, fidelity, held_out_set, relative_accuracy
    from .evaluation.metrics import agreement
    from .evaluation.preview import image_grid, write_png
    from .evaluation.quality import set_quality
    from .hooks.hookspecs import hookimpl
    from .hooks.manager import get_plugin_manager
    from .runtime.checkpoint import Checkpoint
    from .runtime.devices import resolve_device
    from .runtime.io import atomic_path
    from .runtime.memory import keep_freed_memory
    from .sources.base import Batch, DataSource, SourceOption, SyntheticSet
    from .sources.calibration import calibration_source_options, synthetic_set
    from .sources.registry import get_source, list_sources
    from .synthesis.generator import compact_generator
    from .synthesis.objective import LossWeights
    from .synthesis.registry import make_generator, make_prior
    from .teacher.loading import load_model, load_weights
    from .teacher.onnx.graph import load_onnx_model
    from .teacher.tasks import Classification, GenericOutputs, PredictionTask, Segmentation, Sequence
    from .teacher.teacher import Teacher
    from .training.distillation import DistillConfig, Distiller, distill, distill_datafree, kd_loss
    from .training.finetune import kd_loader
    from .training.reestimate import reestimate_batchnorm


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
