"""The committed Grafana dashboard as the dashboard tests read it: panels, queries, variables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser as pp

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "whatsapp-support-exporter.json"
UNLIMITED_FREE_SPACE = 9223372036853727000  # what Meta documents for no practical limit

Dashboard = dict[str, Any]
Panel = dict[str, Any]

# Grafana's variables as a user could set them; $__rate_interval gets a duration no query
# would choose itself, so the parsed range tells whether a rate used the variable.
RATE_INTERVAL = timedelta(seconds=1234)
VARIABLES = {
    "$__rate_interval": "1234s",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": ".*",
    "$instance": ".*",
    "$target": ".*",
    "$account": ".*",
}


def panels_of(dashboard: Dashboard) -> Iterator[Panel]:
    """Every panel but rows, nested ones included."""
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from (p for p in panel.get("panels", []) if p["type"] != "row")


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def queries(dashboard: Dashboard) -> Iterator[tuple[Panel, dict[str, Any]]]:
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def where(panel: Panel, target: dict[str, Any] | None = None) -> str:
    return f"{panel.get('title')!r}" + (f" / {target.get('refId')}" if target else "")


def parsed(dashboard: Dashboard) -> Iterator[tuple[Panel, dict[str, Any], pp.Expr]]:
    """Every query that parses (a query that does not is the PromQL rule's finding)."""
    for panel, target in queries(dashboard):
        try:
            yield panel, target, pp.parse(substitute(target.get("expr", "")))
        except ValueError:
            continue


def load_dashboard() -> Dashboard:
    loaded: Dashboard = json.loads(DASHBOARD.read_text())
    return loaded


def variable(dashboard: Dashboard, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    assert len(found) == 1, name
    return found[0]
