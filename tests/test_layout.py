"""The house a maintainer walks into: folders stacked in floors, no import circle, hooks that import nothing,
built-ins registered as a plugin.

Read from the source files (tests/imports.py), not from a running interpreter, so an import
that only runs inside a function or for type checkers counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from imports import find_circle, import_graph, imported_modules, module_files

from fastdfkd_plugin.hooks import manager
from fastdfkd_plugin.sources import registry as source_lookups
from fastdfkd_plugin.synthesis import registry as synthesis_lookups

ROOT = Path(__file__).resolve().parents[1]
CORE = module_files(ROOT / "fastdfkd_plugin", "fastdfkd_plugin")
ADAPTERS = module_files(ROOT / "adapters", "fastdfkd_plugin.adapters")  # installed inside the package
PACKAGE = {**CORE, **ADAPTERS}

# The floors of the house, bottom up: a part imports only parts on lower floors (and itself).
# A teacher comes in, synthesis and sources make data from it, evaluation and training consume
# the data, the CLI and the adapters sit on top, and the demo uses the adapters as a script would.
FLOORS = {
    "fastdfkd_plugin.errors": 0, "fastdfkd_plugin.version": 0,
    "fastdfkd_plugin.hooks": 1, "fastdfkd_plugin.runtime": 1,
    "fastdfkd_plugin.teacher": 2,
    "fastdfkd_plugin.synthesis": 3,
    "fastdfkd_plugin.sources": 4,
    "fastdfkd_plugin.evaluation": 5, "fastdfkd_plugin.builtin": 5,
    "fastdfkd_plugin.training": 6,
    "fastdfkd_plugin.cli": 7,
    "fastdfkd_plugin.adapters": 8,
    "fastdfkd_plugin.demo": 9,
    "fastdfkd_plugin": 10,  # the public API, which names everything
}


def part_of(module: str) -> str:
    """The folder (or top-level module) of FLOORS that holds ``module``."""
    return max((part for part in FLOORS if module == part or module.startswith(part + ".")), key=len)


def test_the_circle_finder_finds_a_circle():
    assert find_circle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_circle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_no_import_circle_in_the_package_or_its_adapters():
    circle = find_circle(import_graph(PACKAGE))
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_every_folder_and_top_level_module_has_a_floor():
    top_level = {".".join(name.split(".")[:2]) for name in CORE if name != "fastdfkd_plugin"}
    assert top_level <= set(FLOORS), f"give these a floor in FLOORS: {sorted(top_level - set(FLOORS))}"


def test_imports_run_only_down_the_floors():
    upward = [f"{name} imports {target}" for name, targets in import_graph(PACKAGE).items() for target in targets
              if part_of(target) != part_of(name) and FLOORS[part_of(target)] >= FLOORS[part_of(name)]]
    assert upward == []


@pytest.mark.parametrize("graph, upward", [({"fastdfkd_plugin.teacher.tasks": ["fastdfkd_plugin.sources.base"]}, True),
                                           ({"fastdfkd_plugin.runtime.io": ["fastdfkd_plugin.hooks.argtypes"]}, True),
                                           ({"fastdfkd_plugin.sources.base": ["fastdfkd_plugin.teacher.tasks"]}, False)])
def test_the_floor_rule_tells_an_upward_import(graph, upward):
    (name, [target]), = graph.items()
    assert (FLOORS[part_of(target)] >= FLOORS[part_of(name)]) is upward


def test_hookspecs_imports_nothing_of_the_package_at_run_time():
    tree = ast.parse(CORE["fastdfkd_plugin.hooks.hookspecs"].read_text())
    type_checking = [node for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    only_for_types = {id(inner) for block in type_checking for inner in ast.walk(block)}
    runtime = [ast.unparse(node) for node in ast.walk(tree)
               if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in only_for_types
               and (getattr(node, "level", 0) or "fastdfkd_plugin" in ast.unparse(node))]
    assert runtime == [], runtime


def test_built_in_sources_generators_and_priors_come_from_one_plugin_module_listed_like_third_party_ones():
    implementing = sorted(name for name, path in CORE.items()
                          if any(isinstance(node, ast.FunctionDef) and any(ast.unparse(d) == "hookimpl" for d in node.decorator_list)
                                 for node in ast.walk(ast.parse(path.read_text()))))
    # the demo and the adapters are plugins of their own (their commands)
    assert implementing == ["fastdfkd_plugin.builtin", "fastdfkd_plugin.demo"]
    assert manager.BUILTIN_PLUGINS[:2] == ("fastdfkd_plugin.builtin", "fastdfkd_plugin.demo")
    builtin = {entry.name for entry in source_lookups.list_sources() if entry.plugin == "fastdfkd_plugin.builtin"}
    assert builtin == {"fastdfkd", "deepinversion", "gaussian", "uniform"}
    assert {"paper", "compact", "compact-subpixel"} <= set(synthesis_lookups.generator_registry())
    assert {"batchnorm", "transformer", "generic"} <= set(synthesis_lookups.prior_registry())
    for lookup, registry in ((source_lookups.get_source, source_lookups), (synthesis_lookups.make_generator, synthesis_lookups),
                             (synthesis_lookups.make_prior, synthesis_lookups)):  # each beside its registry
        assert lookup.__module__ == registry.__name__


def test_only_the_demo_reaches_from_the_core_into_the_adapters():
    reaching = sorted({name for name in CORE for _, module, _ in imported_modules(name, PACKAGE)
                       if module.startswith("fastdfkd_plugin.adapters")})
    assert reaching == ["fastdfkd_plugin.demo"]  # the demo uses the adapters' public API, as a user's script would
