"""The hooks a plugin can implement. Hook names carry the ``fastdfkd_`` prefix.

A plugin is any module or object with functions marked ``@hookimpl``; third-party
packages expose one through the ``fastdfkd`` entry-point group (see docs/plugins.md).
Sources come from :func:`fastdfkd_register_sources`; toolkit adapters add their
commands through :func:`fastdfkd_register_commands`.
"""

from __future__ import annotations

import argparse
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


@hookspec
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fastdfkd`` subcommands: ``parser = subparsers.add_parser(NAME, help=...)``, then
    ``parser.set_defaults(run=function)`` where ``function(args)`` does the work.

    :mod:`fastdfkd_plugin.options` offers ``add_model_arguments``, ``add_source_arguments``,
    ``load_teacher`` (a :class:`~fastdfkd_plugin.teacher.Teacher`) and ``source_from_args``
    so commands share the same options.
    Raise :class:`~fastdfkd_plugin.FastDFKDError` for user errors (printed, exit 2).
    """
