"""The plugin manager, the registries it yields, and every lookup by name beside its registry.

Sources, generator architectures and inversion priors are registered through the hooks of
:mod:`fastdfkd_plugin.hookspecs`; :func:`get_source`, :func:`make_generator` and
:func:`make_prior` turn a name into the thing registered under it. The built-in plugin
(:mod:`fastdfkd_plugin.builtin`) and the adapters are registered exactly like third-party
plugins, by module name, so nothing below this module imports it. Third-party plugins come
from the ``fastdfkd`` entry-point group unless ``FASTDFKD_DISABLE_PLUGIN_AUTOLOAD`` is set.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import pluggy
from torch import nn

from . import hookspecs
from .errors import FastDFKDError, reason
from .sources.base import DataSource
from .synthesis.priors import Prior
from .teacher import Teacher

if TYPE_CHECKING:
    from .synthesis.generator import GeneratorFactory

DISABLE_AUTOLOAD_ENV = "FASTDFKD_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGINS = (
    "fastdfkd_plugin.builtin",
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


# -- sources ------------------------------------------------------------------------------------

def _source_entry(plugin: str, cls: type[DataSource]) -> tuple[str, type[DataSource]]:
    if not (isinstance(cls, type) and issubclass(cls, DataSource)) or not getattr(cls, "name", None):
        raise FastDFKDError(f"plugin {plugin!r} registered {cls!r}, which is not a DataSource subclass with a name")
    # only with options to check: a plugin written for the old constructor hears of it when its source is built
    undeclared = sorted({option.keyword for option in cls.options} - cls.option_names()) if cls.options else []
    if undeclared:
        raise FastDFKDError(f"plugin {plugin!r} gives source {cls.name!r} command-line options for {', '.join(undeclared)}, "
                            "which its constructor does not take; fix the plugin's options or constructor")
    return cls.name, cls


def source_registry() -> dict[str, SourceEntry]:
    """Every registered source by name; refuses two plugins claiming one name."""
    return {name: SourceEntry(name, cls, plugin)
            for name, (cls, plugin) in _registry("fastdfkd_register_sources", "source", _source_entry).items()}


def list_sources() -> list[SourceEntry]:
    """All sources, sorted by name."""
    return sorted(source_registry().values(), key=lambda entry: entry.name)


def source_class(name: str) -> type[DataSource]:
    """The source class registered as ``name``."""
    registry = source_registry()
    if name not in registry:
        raise FastDFKDError(f"unknown source {name!r}; choose one of {', '.join(sorted(registry))} (see `fastdfkd sources`)")
    return registry[name].cls


def get_source(
    name: str, teacher: Teacher | nn.Module, input_shape: Sequence[int] | None = None, **options: Any
) -> DataSource:
    """Create the source registered as ``name`` for ``teacher``; options go to its constructor.

    ``teacher`` is a :class:`~fastdfkd_plugin.teacher.Teacher`, or a model together with
    ``input_shape`` and the options that build one (``mean``, ``std``, ``device``, ``output_transform``).
    An option the source does not take is refused by name.
    """
    cls = source_class(name)
    described = {key: options.pop(key) for key in ("mean", "std", "output_transform") if key in options}
    teacher = Teacher.of(teacher, input_shape, device=options.pop("device", "auto"), **described)
    accepted = cls.option_names()
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise FastDFKDError(f"source {name!r} does not take {', '.join(map(repr, unknown))} (it takes "
                            f"{', '.join(sorted(accepted))}); drop {'it' if len(unknown) == 1 else 'them'} for this source")
    return cls(teacher, **options)


# -- generators ---------------------------------------------------------------------------------

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


# -- inversion priors ---------------------------------------------------------------------------

def _prior_entry(plugin: str, cls: type[Prior]) -> tuple[str, type[Prior]]:
    if not (isinstance(cls, type) and issubclass(cls, Prior)) or not getattr(cls, "name", None):
        raise FastDFKDError(f"plugin {plugin!r} registered {cls!r}, which is not a Prior subclass with a name")
    return cls.name, cls


def prior_registry() -> dict[str, type[Prior]]:
    """Every registered inversion prior by name (``batchnorm``, ``transformer``, ``generic`` and plugins')."""
    return {name: cls for name, (cls, _) in _registry("fastdfkd_register_priors", "prior", _prior_entry).items()}


def make_prior(name: str, teacher: Teacher, momentum: float) -> Prior:
    """The prior registered as ``name`` (``"auto"``: the applicable one of highest rank), built for ``teacher``."""
    registry = prior_registry()
    if name == "auto":
        applicable = [cls for cls in registry.values() if cls.applies_to(teacher)]
        if not applicable:
            raise FastDFKDError(f"no inversion prior applies to this teacher (installed: {', '.join(sorted(registry))}); "
                                "use the 'gaussian' or 'uniform' source, or install a prior plugin for it")
        return max(applicable, key=lambda cls: cls.rank)(teacher, momentum)
    if name not in registry:
        raise FastDFKDError(f"unknown prior {name!r}; choose auto or one of {', '.join(sorted(registry))}")
    if not registry[name].applies_to(teacher):
        raise FastDFKDError(f"prior {name!r} does not apply to this teacher ({registry[name].description()}); "
                            "use prior 'auto' to pick one that does")
    return registry[name](teacher, momentum)
