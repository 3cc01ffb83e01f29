"""The built-in plugin: fastdfkd's own sources, generator architectures, inversion priors and tasks.

Registered exactly like a third-party plugin (:data:`fastdfkd_plugin.hooks.manager.BUILTIN_PLUGINS`
names it as an entry point names theirs), so the modules that define these classes know
nothing of the plugin machinery and nothing here is special to the registry.
"""

from __future__ import annotations

from typing import Callable

from .hooks.hookspecs import hookimpl
from .sources.base import DataSource
from .sources.deepinversion import DeepInversionSource
from .sources.fastdfkd import FastDFKDSource
from .sources.noise import GaussianSource, UniformSource
from .synthesis.generator import GeneratorFactory, compact_generator, compact_subpixel_generator, paper_generator
from .synthesis.priors import BatchNormPrior, GenericPrior, Prior, TransformerPrior
from .teacher.tasks import Classification, GenericOutputs, PredictionTask, Segmentation, Sequence


@hookimpl
def fastdfkd_register_sources(register: Callable[[type[DataSource]], None]) -> None:
    for source in (FastDFKDSource, DeepInversionSource, GaussianSource, UniformSource):
        register(source)


@hookimpl
def fastdfkd_register_generators(register: Callable[[str, GeneratorFactory], None]) -> None:
    register("paper", paper_generator)
    register("compact", compact_generator)
    register("compact-subpixel", compact_subpixel_generator)


@hookimpl
def fastdfkd_register_priors(register: Callable[[type[Prior]], None]) -> None:
    for prior in (BatchNormPrior, TransformerPrior, GenericPrior):
        register(prior)


@hookimpl
def fastdfkd_register_tasks(register: Callable[[type[PredictionTask]], None]) -> None:
    for task in (Classification, Segmentation, Sequence, GenericOutputs):
        register(task)
