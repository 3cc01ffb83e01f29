"""The registries of generator architectures and inversion priors, and the lookups that build one by name.

Both are registered through hooks (``fastdfkd_register_generators``, ``fastdfkd_register_priors``
in :mod:`fastdfkd_plugin.hooks.hookspecs`) and collected by :func:`fastdfkd_plugin.hooks.manager.registry`;
:func:`make_generator` and :func:`make_prior` turn a name into the thing registered under it.
"""

from __future__ import annotations

from torch import nn

from ..errors import FastDFKDError
from ..hooks.manager import registry
from ..teacher.teacher import Teacher
from .generator import GeneratorFactory
from .priors import Prior

__all__ = ["generator_registry", "make_generator", "prior_registry", "prior_class", "make_prior", "AUTO_PRIORS"]


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
