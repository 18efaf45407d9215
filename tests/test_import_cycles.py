"""The engine's modules import each other without cycles, as the purity test keeps QGIS out of them.

Every import between ``footprint_plugin/core`` modules counts: at module level, inside functions, and
under ``if TYPE_CHECKING:`` (a type hint that needs the other module ties the two as much as a call does).
"""

from __future__ import annotations

import ast
from pathlib import Path

from .helpers import REPO

CORE = REPO / "footprint_plugin" / "core"


def core_imports(folder: Path = CORE) -> dict[str, set[str]]:
    """Module name -> the core modules it imports (relative imports, and absolute ones of the package)."""
    graph: dict[str, set[str]] = {}
    package = "footprint_plugin.core"
    for path in sorted(folder.glob("*.py")):
        name = path.stem
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    module = node.module or ""
                elif node.level == 0 and (node.module or "").startswith(package + "."):
                    module = node.module[len(package) + 1 :]
                else:
                    continue
                if module:
                    targets.add(module.split(".")[0])
                else:  # from . import a, b
                    targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(a.name[len(package) + 1 :].split(".")[0] for a in node.names
                               if a.name.startswith(package + "."))
        graph[name] = {t for t in targets if t != name and (folder / f"{t}.py").is_file()}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_core_has_no_import_cycle():
    graph = core_imports()
    assert len(graph) >= 20
    assert {"pipeline", "parameters"} <= graph["extract"]  # the walk sees real imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in footprint_plugin/core: " + " -> ".join(cycle)


def test_the_walk_finds_a_cycle_hidden_in_a_function_or_a_type_hint(tmp_path):
    (tmp_path / "a.py").write_text("from .b import thing\n")
    (tmp_path / "b.py").write_text("def late():\n    from . import c\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from footprint_plugin.core.a import Type\n")
    (tmp_path / "d.py").write_text("import os\nfrom .a import thing\n")
    graph = core_imports(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "d": {"a"}}) is None
