"""The plugin manager and the registry of sources it yields.

Built-in sources and adapters are registered exactly like third-party plugins: each
built-in module implements hooks from :mod:`fastdfkd_plugin.hookspecs`.
Third-party plugins come from the ``fastdfkd`` entry-point group unless
``FASTDFKD_DISABLE_PLUGIN_AUTOLOAD`` is set.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pluggy
from torch import nn

from . import hookspecs
from .errors import FastDFKDError, reason
from .sources.base import DataSource
from .synthesis.generator import GeneratorFactory
from .synthesis.priors import Prior
from .teacher import Teacher

DISABLE_AUTOLOAD_ENV = "FASTDFKD_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGINS = (
    "fastdfkd_plugin.synthesis.generator",
    "fastdfkd_plugin.synthesis.priors",
    "fastdfkd_plugin.sources.fastdfkd",
    "fastdfkd_plugin.sources.deepinversion",
    "fastdfkd_plugin.sources.noise",
    "fastdfkd_plugin.adapters.onnxruntime",
    "fastdfkd_plugin.adapters.torchao",
    "fastdfkd_plugin.adapters.torch_pruning",
)

log = logging.getLogger(__name__)
_manager: pluggy.PluginManager | None = None
_labels: dict[int, str] = {}  # id(plugin) → "distribution version", for plugins loaded from entry points


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
    """Register every plugin of the entry-point group; one that fails to import is named and skipped.

    A broken third-party package must not take the command line down with it: ``--help``,
    ``sources`` and every other plugin keep working.
    """
    for dist in importlib.metadata.distributions():
        for entry_point in dist.entry_points:
            if entry_point.group != hookspecs.ENTRY_POINT_GROUP or manager.has_plugin(entry_point.name):
                continue
            label = f"{dist.metadata['name']} {dist.version}"
            try:
                plugin = entry_point.load()
            except (Exception, SystemExit) as exc:  # importing third-party code may raise anything
                log.warning("plugin %r (%s) from %s failed to load and is skipped (%s); uninstall %s or set %s=1",
                            entry_point.name, entry_point.value, label, reason(exc), dist.metadata["name"],
                            DISABLE_AUTOLOAD_ENV)
                continue
            manager.register(plugin, name=entry_point.name)
            _labels[id(plugin)] = label


def hook_calls(hook_name: str) -> Iterator[tuple[str, Callable[..., None]]]:
    """(plugin label, guarded call) for every implementation of a hook.

    A call that raises (or exits) is logged with the plugin's name and skipped, so one
    broken plugin cannot disable the others. Our own :class:`FastDFKDError` (e.g. a
    duplicate source name) still propagates: it already names the plugin and the fix.
    """
    for impl in getattr(get_plugin_manager().hook, hook_name).get_hookimpls():
        label = plugin_label(impl)

        def call(impl: pluggy.HookImpl = impl, label: str = label, **kwargs: Any) -> None:
            try:
                impl.function(**kwargs)
            except FastDFKDError:
                raise
            except (Exception, SystemExit) as exc:  # third-party hook code may raise anything
                log.warning("plugin %r failed in %s and is skipped (%s); uninstall it or set %s=1",
                            label, hook_name, reason(exc), DISABLE_AUTOLOAD_ENV)

        yield label, call


def call_each(hook_name: str, **kwargs: Any) -> None:
    """Call every plugin's implementation of ``hook_name`` with ``kwargs`` (see :func:`hook_calls`)."""
    for _, call in hook_calls(hook_name):
        call(**kwargs)


def plugin_label(impl: pluggy.HookImpl) -> str:
    """The installed distribution ("name version") a hook implementation comes from, else its plugin name."""
    return _labels.get(id(impl.plugin), impl.plugin_name)


@dataclass(frozen=True)
class SourceEntry:
    """A registered source: its name, class, and the plugin (or installed package) that registered it."""

    name: str
    cls: type[DataSource]
    plugin: str

    @property
    def description(self) -> str:
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""


def _registry(hook_name: str, kind: str, entry: Callable[..., tuple[str, Any]]) -> dict[str, tuple[Any, str]]:
    """name → (what was registered, plugin label) from every plugin's ``hook_name``; two claims on one name are refused.

    ``entry(plugin, *arguments)`` checks what a plugin passed to ``register`` and returns its (name, value).
    """
    registry: dict[str, tuple[Any, str]] = {}
    for label, call in hook_calls(hook_name):

        def register(*arguments: Any, plugin: str = label) -> None:
            name, value = entry(plugin, *arguments)
            if name in registry:
                raise FastDFKDError(
                    f"{kind} name {name!r} is registered by both {registry[name][1]!r} and {plugin!r}; "
                    f"uninstall one of them or rename its {kind}"
                )
            registry[name] = (value, plugin)

        call(register=register)
    return registry


def _source_entry(plugin: str, cls: type[DataSource]) -> tuple[str, type[DataSource]]:
    if not (isinstance(cls, type) and issubclass(cls, DataSource)) or not getattr(cls, "name", None):
        raise FastDFKDError(f"plugin {plugin!r} registered {cls!r}, which is not a DataSource subclass with a name")
    return cls.name, cls


def source_registry() -> dict[str, SourceEntry]:
    """Every registered source by name; refuses two plugins claiming one name."""
    return {name: SourceEntry(name, cls, plugin)
            for name, (cls, plugin) in _registry("fastdfkd_register_sources", "source", _source_entry).items()}


def _generator_entry(plugin: str, name: str, factory: GeneratorFactory) -> tuple[str, GeneratorFactory]:
    if not isinstance(name, str) or not callable(factory):
        raise FastDFKDError(f"plugin {plugin!r} registered generator {name!r} with {factory!r}; pass a name and a callable")
    return name, factory


def generator_registry() -> dict[str, GeneratorFactory]:
    """Every registered generator architecture by name (``paper``, ``compact`` and plugins')."""
    return {name: factory for name, (factory, _) in _registry("fastdfkd_register_generators", "generator", _generator_entry).items()}


def make_generator(name: str, input_shape: tuple[int, int, int], teacher_macs: int, latent_dim: int) -> nn.Module:
    """The generator registered as ``name``, sized for ``input_shape`` and a teacher of ``teacher_macs`` per image."""
    registry = generator_registry()
    if name not in registry:
        raise FastDFKDError(f"unknown generator {name!r}; choose one of {', '.join(sorted(registry))}")
    return registry[name](input_shape, teacher_macs, latent_dim)


def _prior_entry(plugin: str, cls: type[Prior]) -> tuple[str, type[Prior]]:
    if not (isinstance(cls, type) and issubclass(cls, Prior)) or not getattr(cls, "name", None):
        raise FastDFKDError(f"plugin {plugin!r} registered {cls!r}, which is not a Prior subclass with a name")
    return cls.name, cls


def prior_registry() -> dict[str, type[Prior]]:
    """Every registered inversion prior by name (``batchnorm``, ``transformer``, ``generic`` and plugins')."""
    return {name: cls for name, (cls, _) in _registry("fastdfkd_register_priors", "prior", _prior_entry).items()}


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
