"""The house's shape: the modules of exporter/ import each other in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "exporter"


def import_graph() -> dict[str, set[str]]:
    """exporter module -> the exporter modules it imports (at any depth of the file)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        name = path.stem
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("exporter."):
                    edges.add(node.module.split(".")[1])
                elif node.module == "exporter":
                    edges.update(a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists())
            elif isinstance(node, ast.Import):
                edges.update(
                    a.name.split(".")[1] for a in node.names if a.name.startswith("exporter.")
                )
        graph[name] = edges - {name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, if there is any."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_module_of_the_exporter_imports_one_that_imports_it_back() -> None:
    assert cycle(import_graph()) is None, " -> ".join(cycle(import_graph()) or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycle({"store": {"collector"}, "collector": {"store"}}) == [
        "collector",
        "store",
        "collector",
    ]


def test_the_store_knows_no_renderer_and_the_collector_no_store() -> None:
    graph = import_graph()
    assert "collector" not in graph["store"]
    assert "store" not in graph["collector"]
