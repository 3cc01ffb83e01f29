"""The hooks a plugin can implement. Hook names carry the ``fastdfkd_`` prefix.

A plugin is any module or object with functions marked ``@hookimpl``; third-party
packages expose one through the ``fastdfkd`` entry-point group (see docs/plugins.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from .sources.base import DataSource

PROJECT = "fastdfkd"
ENTRY_POINT_GROUP = "fastdfkd"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fastdfkd_register_sources(register: Callable[[type[DataSource]], None]) -> None:
    """Register data sources: call ``register(SourceClass)`` once per :class:`DataSource` subclass.

    The class's ``name`` attribute is what users select (``--source NAME``); names must
    be unique across all installed plugins. The first line of its docstring is the
    description ``fastdfkd sources`` prints.
    """
