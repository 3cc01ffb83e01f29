"""Reading a tree's imports without running it: the graph the layout tests check for circles and stray imports.

Every ``import`` statement counts, wherever it stands (module level, inside a function,
under ``if TYPE_CHECKING:``): a circle that only type checkers follow is still a circle
to the next reader.
"""

from __future__ import annotations

import ast
from pathlib import Path


def module_files(folder: Path, package: str) -> dict[str, Path]:
    """Module name → file for every ``.py`` under ``folder``, which is installed as ``package``."""
    files = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        files[".".join((package, *parts))] = path
    return files


def imported_modules(name: str, files: dict[str, Path]) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, names taken from it) for every import in module ``name`` of ``files``.

    ``from package import submodule`` counts as an import of the submodule.
    """
    package = name if files[name].name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(files[name].read_text(), str(files[name]))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names = [alias.name for alias in node.names]
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in files]
            found += [(node.lineno, sub, []) for sub in submodules] or [(node.lineno, module, names)]
    return found


def import_graph(files: dict[str, Path]) -> dict[str, list[str]]:
    """Module → the modules of ``files`` it imports."""
    return {name: sorted({module for _, module, _ in imported_modules(name, files) if module in files and module != name})
            for name in files}


def find_circle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import circle of ``graph`` (``a -> b -> a`` as ``[a, b, a]``), or None when there is none."""
    state: dict[str, str] = {}

    def circle_from(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for target in graph[name]:
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := circle_from(target, path + [target])):
                return found
        state[name] = "done"
        return None

    for start in graph:
        if start not in state and (circle := circle_from(start, [start])):
            return circle
    return None
