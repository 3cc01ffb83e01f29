"""fastdfkd-plugin: data from the model itself, for compression toolkits that want data.

>>> from fastdfkd_plugin import Teacher, get_source
>>> teacher = Teacher(model, (3, 32, 32), mean=MEAN, std=STD)   # built once, passed everywhere
>>> calibration = get_source("fastdfkd", teacher).synthetic_set(num_samples=512, batch_size=64)

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
    "Checkpoint": ".checkpoint",
    "DataSource": ".sources.base",
    "DistillConfig": ".distillation",
    "Distiller": ".distillation",
    "FastDFKDError": ".errors",
    "LossWeights": ".synthesis.objective",
    "SourceOption": ".sources.base",
    "SyntheticSet": ".sources.base",
    "Teacher": ".teacher",
    "agreement": ".metrics",
    "atomic_path": ".io",
    "compact_generator": ".synthesis.generator",
    "distill": ".distillation",
    "distill_datafree": ".distillation",
    "get_plugin_manager": ".plugins",
    "get_source": ".plugins",
    "hookimpl": ".hookspecs",
    "image_grid": ".preview",
    "Classification": ".tasks",
    "GenericOutputs": ".tasks",
    "PredictionTask": ".tasks",
    "Segmentation": ".tasks",
    "kd_loader": ".finetune",
    "kd_loss": ".distillation",
    "keep_freed_memory": ".memory",
    "list_sources": ".plugins",
    "load_model": ".loading",
    "load_onnx_model": ".onnx_graph",
    "load_weights": ".loading",
    "make_generator": ".plugins",
    "make_prior": ".plugins",
    "reestimate_batchnorm": ".batchnorm",
    "resolve_device": ".devices",
    "set_quality": ".quality",
    "write_png": ".preview",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .batchnorm import reestimate_batchnorm
    from .checkpoint import Checkpoint
    from .devices import resolve_device
    from .distillation import DistillConfig, Distiller, distill, distill_datafree, kd_loss
    from .errors import FastDFKDError
    from .finetune import kd_loader
    from .io import atomic_path
    from .hookspecs import hookimpl
    from .loading import load_model, load_weights
    from .memory import keep_freed_memory
    from .metrics import agreement
    from .onnx_graph import load_onnx_model
    from .plugins import get_plugin_manager, get_source, list_sources, make_generator, make_prior
    from .preview import image_grid, write_png
    from .quality import set_quality
    from .sources.base import Batch, DataSource, SourceOption, SyntheticSet
    from .synthesis.generator import compact_generator
    from .synthesis.objective import LossWeights
    from .tasks import Classification, GenericOutputs, PredictionTask, Segmentation
    from .teacher import Teacher


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
