"""The house's shape: the modules of the exporter import each other in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "whatsapp_support_exporter"


def module_name(path: Path) -> str:
    """``.../whatsapp_support_exporter/fleet/poller.py`` -> ``fleet.poller``."""
    parts = path.relative_to(ROOT / PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def import_graph() -> dict[str, set[str]]:
    """exporter module -> the exporter modules it imports (at any depth of the file)."""
    modules = {module_name(p) for p in (ROOT / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        name = module_name(path)
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith(PACKAGE + "."):
                    base = node.module.removeprefix(PACKAGE + ".")
                    targets.append(base)
                    targets.extend(f"{base}.{a.name}" for a in node.names)
                elif node.module == PACKAGE:
                    targets.extend(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                targets.extend(
                    a.name.removeprefix(PACKAGE + ".")
                    for a in node.names
                    if a.name.startswith(PACKAGE + ".")
                )
            edges.update(t for t in targets if t in modules)
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
    assert "output.families" not in graph["output.store"]
    assert "output.store" not in graph["output.families"]


def test_the_simulator_imports_nothing_of_the_exporter() -> None:
    for path in (ROOT / "whatsapp_api_simulator").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                assert not any(n.startswith(PACKAGE) for n in names), path
