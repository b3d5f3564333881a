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
    assert cycle({"store": {"families"}, "families": {"store"}}) == [
        "families",
        "store",
        "families",
    ]


# The subpackages, top to bottom: a module may import its own layer and the layers below it.
# The command line builds everything; the web endpoint serves what the fleet polls; the fleet
# schedules polls and hands answers to the output path; the upstream clients know nothing above.
LAYERS = ("cli", "web", "fleet", "output", "upstream")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer into a higher one, as ``importer -> imported``."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}

    def layer(module: str) -> int | None:
        return rank.get(module.split(".")[0])

    wrong = []
    for module, imported in sorted(graph.items()):
        here = layer(module)
        for other in sorted(imported):
            there = layer(other)
            if here is not None and there is not None and there < here:
                wrong.append(f"{module} -> {other}")
    return wrong


def test_imports_point_down_the_layers_cli_web_fleet_output_upstream() -> None:
    graph = import_graph()
    assert {module.split(".")[0] for module in graph} >= set(LAYERS)
    assert upward_imports(graph) == []


def test_the_layer_check_finds_an_import_that_points_up() -> None:
    graph = {"fleet.poller": {"cli.settings", "output.store"}, "cli.main": {"fleet.poller"}}
    assert upward_imports(graph) == ["fleet.poller -> cli.settings"]


def test_the_store_knows_no_renderer_and_the_metric_table_no_store() -> None:
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
