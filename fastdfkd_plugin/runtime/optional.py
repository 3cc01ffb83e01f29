"""Optional dependencies: imported where they are used, with one sentence naming the extra that installs them.

The core needs only torch, pluggy, numpy and tqdm; each toolkit adapter, the demo and
the plots import their package through :func:`require`, so a missing one is a
:class:`~fastdfkd_plugin.FastDFKDError` that says what to install, never an ImportError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import FastDFKDError


def require(module: str, extra: str, what: str | None = None, note: str = "") -> ModuleType:
    """Import ``module``; if it is missing, say that ``pip install 'fastdfkd-plugin[extra]'`` provides it.

    ``what`` names the package for people (default: the module name); ``note`` is appended to the advice.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FastDFKDError(f"{what or module} is not installed; pip install 'fastdfkd-plugin[{extra}]'{note}") from exc
