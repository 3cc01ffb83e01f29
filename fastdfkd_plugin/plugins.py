"""Every lookup by name beside its registry: sources, generator architectures and inversion priors.

They are registered through the hooks of :mod:`fastdfkd_plugin.hookspecs` and collected by
:func:`fastdfkd_plugin.manager.registry`; :func:`get_source`, :func:`make_generator` and
:func:`make_prior` turn a name into the thing registered under it. (Tasks, which the Teacher
itself looks up, have theirs in :mod:`fastdfkd_plugin.tasks`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from torch import nn

from .errors import FastDFKDError
from .manager import get_plugin_manager, registry
from .sources.base import DataSource
from .synthesis.priors import Prior
from .teacher import Teacher

if TYPE_CHECKING:
    from .synthesis.generator import GeneratorFactory

__all__ = ["get_plugin_manager", "get_source", "list_sources", "source_class", "source_registry", "make_generator",
           "generator_registry", "make_prior", "prior_registry", "SourceEntry"]


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

    ``teacher`` is a :class:`~fastdfkd_plugin.teacher.Teacher`, or a model together with
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


# -- generators ---------------------------------------------------------------------------------

def _generator_entry(plugin: str, name: str, factory: GeneratorFactory) -> tuple[str, GeneratorFactory]:
    if not isinstance(name, str) or not callable(factory):
        raise FastDFKDError(f"plugin {plugin!r} registered generator {name!r} with {factory!r}; pass a name and a callable")
    return name, factory


def generator_registry() -> dict[str, GeneratorFactory]:
    """Every registered generator architecture by name (``paper``, ``compact`` and plugins')."""
    return {name: factory for name, (factory, _) in registry("fastdfkd_register_generators", "generator", _generator_entry).items()}


def make_generator(name: str, input_shape: tuple[int, int, int], teacher_macs: int, latent_dim: int) -> nn.Module:
    """The generator registered as ``name``, sized for ``input_shape`` and a teacher of ``teacher_macs`` per image."""
    known = generator_registry()
    if name not in known:
        raise FastDFKDError(f"unknown generator {name!r}; choose one of {', '.join(sorted(known))}")
    return known[name](input_shape, teacher_macs, latent_dim)


# -- inversion priors ---------------------------------------------------------------------------

def _prior_entry(plugin: str, cls: type[Prior]) -> tuple[str, type[Prior]]:
    if not (isinstance(cls, type) and issubclass(cls, Prior)) or not getattr(cls, "name", None):
        raise FastDFKDError(f"plugin {plugin!r} registered {cls!r}, which is not a Prior subclass with a name")
    return cls.name, cls


def prior_registry() -> dict[str, type[Prior]]:
    """Every registered inversion prior by name (``batchnorm``, ``transformer``, ``generic`` and plugins')."""
    return {name: cls for name, (cls, _) in registry("fastdfkd_register_priors", "prior", _prior_entry).items()}


AUTO_PRIORS = ("auto", "auto-calibration")  # the selectors make_prior takes besides a prior's name


def prior_class(name: str, teacher: Teacher) -> type[Prior]:
    """The prior registered as ``name`` for ``teacher``: ``"auto"`` picks the applicable one of highest rank,
    ``"auto-calibration"`` the same among those that suit calibration sets (``Prior.suits_calibration``)."""
    known = prior_registry()
    if name in AUTO_PRIORS:
        applicable = [cls for cls in known.values()
                      if cls.applies_to(teacher) and (name == "auto" or cls.suits_calibration)]
        if not applicable:
            raise FastDFKDError(f"no inversion prior applies to this teacher (installed: {', '.join(sorted(known))}); "
                                "use the 'gaussian' or 'uniform' source, or install a prior plugin for it")
        return max(applicable, key=lambda cls: cls.rank)
    if name not in known:
        raise FastDFKDError(f"unknown prior {name!r}; choose auto, auto-calibration or one of {', '.join(sorted(known))}")
    if not known[name].applies_to(teacher):
        raise FastDFKDError(f"prior {name!r} does not apply to this teacher ({known[name].description()}); "
                            "use prior 'auto' to pick one that does")
    return known[name]


def make_prior(name: str, teacher: Teacher, momentum: float) -> Prior:
    """:func:`prior_class` built for ``teacher``."""
    return prior_class(name, teacher)(teacher, momentum)
