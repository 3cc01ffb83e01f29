"""Generators screened by name without joining the product: ``compact:SHARE`` is ``compact`` at another cost share.

A benchmark passes its generator names to :func:`register_screened_generators`, which
registers the ``compact:SHARE`` ones through the plugin hook, as any third-party
generator would be (``compact`` itself is ``compact:0.25``).
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable

from torch import nn

from fastdfkd_plugin import compact_generator, get_plugin_manager, hookimpl

PREFIX = "compact:"


class CostShareScreen:
    """A plugin registering one ``compact:SHARE`` generator per screened share."""

    def __init__(self, names: Iterable[str]) -> None:
        self.shares = {name: float(name[len(PREFIX):]) for name in names if name.startswith(PREFIX)}

    @hookimpl
    def fastdfkd_register_generators(self, register: Callable[[str, Callable[..., nn.Module]], None]) -> None:
        for name, share in self.shares.items():
            register(name, functools.partial(compact_generator, cost_share=share))


def register_screened_generators(names: Iterable[str]) -> None:
    """Make the ``compact:SHARE`` names among ``names`` selectable in this process."""
    screen = CostShareScreen(names)
    if screen.shares:
        get_plugin_manager().register(screen)
