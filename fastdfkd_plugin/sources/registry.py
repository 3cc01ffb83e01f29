"""The registry of data sources, and the lookups that turn a source's name into a source.

Sources are registered through the ``fastdfkd_register_sources`` hook
(:mod:`fastdfkd_plugin.hooks.hookspecs`) and collected by :func:`fastdfkd_plugin.hooks.manager.registry`.
Generator architectures and inversion priors have their registries beside them in
:mod:`fastdfkd_plugin.synthesis.registry`; tasks, which the Teacher itself looks up, in
:mod:`fastdfkd_plugin.teacher.tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from torch import nn

from ..errors import FastDFKDError
from ..hooks.manager import registry
from ..teacher.teacher import Teacher
from .base import DataSource

__all__ = ["get_source", "list_sources", "source_class", "source_registry", "SourceEntry"]


@dataclass(frozen=True)
class SourceEntry:
    """A registered source: its name, class, and the plugin (or installed package) that registered it."""

    name: str
    cls: type[DataSource]
    plugin: str

    @property
    def description(self) -> str:
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""


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
            for name, (cls, plugin) in registry("fastdfkd_register_sources", "source", _source_entry).items()}


def list_sources() -> list[SourceEntry]:
    """All sources, sorted by name."""
    return sorted(source_registry().values(), key=lambda entry: entry.name)


def source_class(name: str) -> type[DataSource]:
    """The source class registered as ``name``."""
    known = source_registry()
    if name not in known:
        raise FastDFKDError(f"unknown source {name!r}; choose one of {', '.join(sorted(known))} (see `fastdfkd sources`)")
    return known[name].cls


def get_source(
    name: str, teacher: Teacher | nn.Module, input_shape: Sequence[int] | None = None, **options: Any
) -> DataSource:
    """Create the source registered as ``name`` for ``teacher``; options go to its constructor.

    ``teacher`` is a :class:`~fastdfkd_plugin.teacher.teacher.Teacher`, or a model together with
    ``input_shape`` and the options that build one (``mean``, ``std``, ``device``, ``output_transform``, ``task``).
    An option the source does not take is refused by name.
    """
    cls = source_class(name)
    described = {key: options.pop(key) for key in ("mean", "std", "output_transform", "task") if key in options}
    teacher = Teacher.of(teacher, input_shape, device=options.pop("device", "auto"), **described)
    accepted = cls.option_names()
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise FastDFKDError(f"source {name!r} does not take {', '.join(map(repr, unknown))} (it takes "
                            f"{', '.join(sorted(accepted))}); drop {'it' if len(unknown) == 1 else 'them'} for this source")
    return cls(teacher, **options)
