"""fastdfkd-plugin: data from the model itself, for compression toolkits that want data.

>>> from fastdfkd_plugin import Teacher, get_source
>>> teacher = Teacher(model, (3, 32, 32), mean=MEAN, std=STD)   # built once, passed everywhere
>>> calibration = get_source("fastdfkd", teacher).synthetic_set(num_samples=512, batch_size=64)
"""

__version__ = "0.1.0"

from .errors import FastDFKDError  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .plugins import get_source, list_sources  # noqa: E402
from .sources.base import Batch, DataSource, SyntheticSet  # noqa: E402
from .teacher import Teacher  # noqa: E402

__all__ = [
    "Batch", "DataSource", "FastDFKDError", "SyntheticSet", "Teacher", "__version__", "get_source", "hookimpl", "list_sources",
]
