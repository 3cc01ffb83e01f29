"""The house a maintainer walks into: no import circle, hooks that import nothing, built-ins registered as a plugin.

Read from the source files (tests/imports.py), not from a running interpreter, so an import
that only runs inside a function or for type checkers counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from imports import find_circle, import_graph, imported_modules, module_files

from fastdfkd_plugin import manager, plugins

ROOT = Path(__file__).resolve().parents[1]
CORE = module_files(ROOT / "fastdfkd_plugin", "fastdfkd_plugin")
ADAPTERS = module_files(ROOT / "adapters", "fastdfkd_plugin.adapters")  # installed inside the package
PACKAGE = {**CORE, **ADAPTERS}


def test_the_circle_finder_finds_a_circle():
    assert find_circle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_circle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_no_import_circle_in_the_package_or_its_adapters():
    circle = find_circle(import_graph(PACKAGE))
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_hookspecs_imports_nothing_of_the_package_at_run_time():
    tree = ast.parse(CORE["fastdfkd_plugin.hookspecs"].read_text())
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
    assert implementing == ["fastdfkd_plugin.builtin"]  # the adapters are plugins of their own (their commands)
    assert manager.BUILTIN_PLUGINS[0] == "fastdfkd_plugin.builtin"
    builtin = {entry.name for entry in plugins.list_sources() if entry.plugin == "fastdfkd_plugin.builtin"}
    assert builtin == {"fastdfkd", "deepinversion", "gaussian", "uniform"}
    assert {"paper", "compact", "compact-subpixel"} <= set(plugins.generator_registry())
    assert {"batchnorm", "transformer", "generic"} <= set(plugins.prior_registry())
    for lookup in (plugins.get_source, plugins.make_generator, plugins.make_prior):  # each beside its registry
        assert lookup.__module__ == "fastdfkd_plugin.plugins"


def test_only_the_demo_reaches_from_the_core_into_the_adapters():
    reaching = sorted({name for name in CORE for _, module, _ in imported_modules(name, PACKAGE)
                       if module.startswith("fastdfkd_plugin.adapters")})
    assert reaching == ["fastdfkd_plugin.demo"]  # the demo uses the adapters' public API, as a user's script would
