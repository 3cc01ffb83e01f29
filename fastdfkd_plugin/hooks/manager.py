"""The plugin manager and the registries its hooks yield: nothing of the package but the hook specifications.

Everything selectable by name (sources, generators, priors, tasks) is registered through a
hook and collected by :func:`registry`, which refuses two claims on one name. The built-in
plugin (:mod:`fastdfkd_plugin.builtin`), the demo and the adapters are registered exactly like
third-party plugins, by module name, so this module imports none of them; third-party
plugins come from the ``fastdfkd`` entry-point group unless ``FASTDFKD_DISABLE_PLUGIN_AUTOLOAD`` is set.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from typing import Any, Callable, Iterator

import pluggy

from ..errors import FastDFKDError, reason
from . import hookspecs

DISABLE_AUTOLOAD_ENV = "FASTDFKD_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGINS = (
    "fastdfkd_plugin.builtin",
    "fastdfkd_plugin.demo",
    "fastdfkd_plugin.adapters.brevitas",
    "fastdfkd_plugin.adapters.onnx_export",
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


def registry(hook_name: str, kind: str, entry: Callable[..., tuple[str, Any]]) -> dict[str, tuple[Any, str]]:
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
