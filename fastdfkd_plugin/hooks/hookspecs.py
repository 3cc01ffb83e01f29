"""The hooks a plugin can implement. Hook names carry the ``fastdfkd_`` prefix.

A plugin is any module or object with functions marked ``@hookimpl``; third-party
packages expose one through the ``fastdfkd`` entry-point group (see docs/plugins.md),
and fastdfkd's own sources, generators and priors come from :mod:`fastdfkd_plugin.builtin`
the same way. Sources come from :func:`fastdfkd_register_sources`, the ``fastdfkd`` source's
generator architectures from :func:`fastdfkd_register_generators`, the inversion
priors of the sources that invert the teacher from :func:`fastdfkd_register_priors`, the kinds of
teacher output (what the outputs mean) from :func:`fastdfkd_register_tasks`; toolkit adapters
add their commands through :func:`fastdfkd_register_commands`.

This module imports nothing of the package, not even for type checkers: it sits below every
other module, so any of them can import :data:`hookimpl` without a circle. What each
``register`` takes is named in its hook's docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    import argparse

PROJECT = "fastdfkd"
ENTRY_POINT_GROUP = "fastdfkd"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fastdfkd_register_sources(register: Callable[[type], None]) -> None:
    """Register data sources: call ``register(SourceClass)`` once per :class:`~.sources.base.DataSource` subclass.

    The class's ``name`` attribute is what users select (``--source NAME``); names must
    be unique across all installed plugins. The first line of its docstring is the
    description ``fastdfkd sources`` prints; its ``options`` (:class:`~.sources.base.SourceOption`)
    are the command-line options ``--source NAME`` adds to every command that synthesises.
    """


@hookspec
def fastdfkd_register_generators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register generator architectures for the ``fastdfkd`` source: ``register(name, factory)``.

    ``factory(input_shape, teacher_macs, latent_dim)`` returns a module with a
    ``latent_dim`` attribute that maps N×latent_dim latents to N×C×H×W pixels in [0, 1];
    ``teacher_macs`` (the teacher's multiply-adds per image) lets it size itself. Users
    select it with ``generator=NAME`` (``--generator NAME``); names must be unique.
    """


@hookspec
def fastdfkd_register_priors(register: Callable[[type], None]) -> None:
    """Register inversion priors: call ``register(PriorClass)`` once per :class:`~.synthesis.priors.Prior` subclass.

    Sources that invert the teacher (``fastdfkd``, ``deepinversion``) add the prior's
    term to their loss. With ``prior="auto"`` (the default) the applicable prior
    (``applies_to(teacher)``) with the highest ``rank`` is used; users select one by
    name with ``prior=NAME`` (``--prior NAME``). Names must be unique.
    """


@hookspec
def fastdfkd_register_tasks(register: Callable[[type], None]) -> None:
    """Register kinds of teacher output: call ``register(TaskClass)`` once per :class:`~.tasks.PredictionTask` subclass.

    A task says what the outputs mean to synthesis (target and adversarial terms),
    distillation (KD loss), labels, agreement and evaluation. With ``task="auto"`` (the
    default) the task of highest ``rank`` whose ``recognises(outputs)`` is true on a probe
    batch is used; users select one by name with ``task=NAME`` (``--task NAME``). Names must be unique.
    """


@hookspec
def fastdfkd_register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fastdfkd`` subcommands: ``parser = subparsers.add_parser(NAME, help=...)``, then
    ``parser.set_defaults(run=function)`` where ``function(args)`` does the work.

    :mod:`fastdfkd_plugin.cli.options` offers ``add_model_arguments``, ``add_source_arguments``
    (the common ones and those of the source ``--source`` names), ``load_teacher``
    (a :class:`~fastdfkd_plugin.teacher.teacher.Teacher`) and ``source_from_args`` so commands share the same options.
    Raise :class:`~fastdfkd_plugin.FastDFKDError` for user errors (printed, exit 2).
    """
