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

__version__ = "0.1.0"

_EXPORTS = {
    "Batch": ".sources.base",
    "DataSource": ".sources.base",
    "FastDFKDError": ".errors",
    "SyntheticSet": ".sources.base",
    "Teacher": ".teacher",
    "get_source": ".plugins",
    "hookimpl": ".hookspecs",
    "kd_loader": ".finetune",
    "kd_loss": ".distillation",
    "list_sources": ".plugins",
}
__all__ = ["Batch", "DataSource", "FastDFKDError", "SyntheticSet", "Teacher", "__version__", "get_source", "hookimpl",
           "kd_loader", "kd_loss", "list_sources"]

if TYPE_CHECKING:
    from .distillation import kd_loss
    from .errors import FastDFKDError
    from .finetune import kd_loader
    from .hookspecs import hookimpl
    from .plugins import get_source, list_sources
    from .sources.base import Batch, DataSource, SyntheticSet
    from .teacher import Teacher


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
