"""The plugin manager and the registry of sources it yields.

Built-in sources and adapters are registered exactly like third-party plugins: each
built-in module implements hooks from :mod:`fastdfkd_plugin.hookspecs`.
Third-party plugins come from the ``fastdfkd`` entry-point group unless
``FASTDFKD_DISABLE_PLUGIN_AUTOLOAD`` is set.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import pluggy
from torch import nn

from . import hookspecs
from .errors import FastDFKDError
from .sources.base import DataSource
from .teacher import Teacher

DISABLE_AUTOLOAD_ENV = "FASTDFKD_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGINS = (
    "fastdfkd_plugin.sources.fastdfkd",
    "fastdfkd_plugin.sources.deepinversion",
    "fastdfkd_plugin.sources.noise",
    "fastdfkd_plugin.adapters.onnxruntime",
    "fastdfkd_plugin.adapters.torchao",
    "fastdfkd_plugin.adapters.torch_pruning",
)

_manager: pluggy.PluginManager | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with built-ins and (unless disabled) entry points loaded."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        for module_name in BUILTIN_PLUGINS:
            manager.register(importlib.import_module(module_name), name=module_name)
        if not os.environ.get(DISABLE_AUTOLOAD_ENV):
            _load_entry_points(manager)
        manager.check_pending()
        _manager = manager
    return _manager


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    try:
        manager.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
    except Exception as exc:  # a broken third-party plugin may raise anything on import
        raise FastDFKDError(
            f"a plugin in the {hookspecs.ENTRY_POINT_GROUP!r} entry-point group failed to load ({exc}); "
            f"uninstall it or set {DISABLE_AUTOLOAD_ENV}=1"
        ) from exc


@dataclass(frozen=True)
class SourceEntry:
    """A registered source: its name, class, and the plugin (or installed package) that registered it."""

    name: str
    cls: type[DataSource]
    plugin: str

    @property
    def description(self) -> str:
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""


def source_registry() -> dict[str, SourceEntry]:
    """Every registered source by name; refuses two plugins claiming one name."""
    manager = get_plugin_manager()
    distributions = {id(plugin): f"{dist.metadata['name']} {dist.version}" for plugin, dist in manager.list_plugin_distinfo()}
    registry: dict[str, SourceEntry] = {}
    for impl in manager.hook.fastdfkd_register_sources.get_hookimpls():
        label = distributions.get(id(impl.plugin), impl.plugin_name)

        def register(cls: type[DataSource], plugin: str = label) -> None:
            if not (isinstance(cls, type) and issubclass(cls, DataSource)) or not getattr(cls, "name", None):
                raise FastDFKDError(f"plugin {plugin!r} registered {cls!r}, which is not a DataSource subclass with a name")
            if cls.name in registry:
                raise FastDFKDError(
                    f"source name {cls.name!r} is registered by both {registry[cls.name].plugin!r} and {plugin!r}; "
                    "uninstall one of them or rename its source"
                )
            registry[cls.name] = SourceEntry(cls.name, cls, plugin)

        impl.function(register=register)
    return registry


def list_sources() -> list[SourceEntry]:
    """All sources, sorted by name."""
    return sorted(source_registry().values(), key=lambda entry: entry.name)


def get_source(
    name: str, teacher: Teacher | nn.Module, input_shape: tuple[int, int, int] | None = None, **options: Any
) -> DataSource:
    """Create the source registered as ``name`` for ``teacher``; options go to its constructor.

    ``teacher`` is a :class:`~fastdfkd_plugin.teacher.Teacher`, or a model together with
    ``input_shape`` and the options that build one (``mean``, ``std``, ``device``, ``output_transform``).
    """
    registry = source_registry()
    if name not in registry:
        raise FastDFKDError(f"unknown source {name!r}; choose one of {', '.join(sorted(registry))} (see `fastdfkd sources`)")
    try:
        return registry[name].cls(teacher, input_shape, **options)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc):
            raise FastDFKDError(f"source {name!r} does not take that option ({exc}); drop it for this source") from exc
        raise
