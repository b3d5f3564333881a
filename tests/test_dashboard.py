"""The Grafana dashboard is importable, uses the data source variable and only valid queries."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promql import KNOWN_METRICS, metric_names, promtool

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "whatsapp-support-exporter.json"


# Values a Grafana user could pick, substituted to turn a panel query into plain PromQL.
GRAFANA_VARIABLES = {
    "${datasource}": "prometheus",
    "$__rate_interval": "2m",
    "$__interval": "1m",
    "$__range": "1h",
    "${target:regex}": "cluster|single",
    "${host:regex}": ".*",
    "$target": "cluster|single",
    "$host": ".*",
}


def substitute_variables(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def check_promql(exprs: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Parse expressions with promtool by wrapping each in a recording rule."""
    rules = {
        "groups": [
            {
                "name": "parse",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, expr in enumerate(exprs.values())
                ],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in all_panels(dashboard["panels"]) if p["type"] != "row"]


@pytest.fixture(scope="module")
def queries(panels: list[dict[str, Any]]) -> dict[str, str]:
    """Every panel query, keyed by panel title and refId."""
    return {
        f"{panel['title']} / {t['refId']}": t["expr"] for panel in panels for t in panel["targets"]
    }


def variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    assert len(matches) == 1, f"expected one template variable {name!r}"
    return matches[0]


def variable_query(var: dict[str, Any]) -> str:
    query = var["query"]
    return query["query"] if isinstance(query, dict) else query


def test_dashboard_declares_its_inputs_and_requirements_for_import(dashboard):
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    assert ("grafana", "grafana") in required
    assert ("datasource", "prometheus") in required
    used_panel_types = {p["type"] for p in all_panels(dashboard["panels"])} - {"row"}
    assert used_panel_types <= {r["id"] for r in dashboard["__requires"] if r["type"] == "panel"}


def test_dashboard_has_a_stable_uid_a_current_schema_and_no_instance_id(dashboard):
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["id"] is None
    assert dashboard["title"]


def test_dashboard_has_a_prometheus_datasource_variable(dashboard):
    ds = variable(dashboard, "datasource")
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("target", "label_values(whatsapp_up, target)"),
        ("host", 'label_values(whatsapp_role{target=~"$target"}, host)'),
    ],
)
def test_target_and_host_variables_come_from_label_values_and_allow_all(dashboard, name, query):
    var = variable(dashboard, name)
    assert var["type"] == "query"
    assert variable_query(var) == query
    assert var["datasource"]["uid"] == "${datasource}"
    assert var["multi"] is True
    assert var["includeAll"] is True
    # "All" must also match series without the label (single instances have no host).
    assert re.fullmatch(var["allValue"], "")


def test_every_panel_and_query_uses_the_datasource_variable(panels):
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_panel_has_at_least_one_query(panels):
    for panel in panels:
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["expr"].strip(), f"{panel['title']} / {t['refId']}"


def test_panel_ids_are_unique(dashboard):
    ids = [p["id"] for p in all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))


def test_issue_required_panels_exist(panels):
    by_type = {(p["type"], p["title"]) for p in panels}
    for kind, title in [
        ("stat", "Targets up"),
        ("stat", "Sockets connected"),
        ("stat", "Nearest build expiry"),
        ("stat", "Least free space"),
        ("bargauge", "Time until build expiry per container"),
        ("timeseries", "Free space per directory"),
        ("bargauge", "Estimated time until full"),
        ("state-timeline", "Socket state"),
        ("table", "Cluster topology"),
        ("bargauge", "Shard ownership"),
        ("table", "Schema versions across containers"),
        ("timeseries", "Poll duration"),
        ("timeseries", "Poll errors by reason"),
        ("timeseries", "Data age"),
    ]:
        assert (kind, title) in by_type


def test_queries_on_target_series_filter_by_the_target_variable(queries):
    for key, expr in queries.items():
        if "whatsapp_exporter_build_info" in expr:
            continue  # describes the exporter itself, not a target
        assert 'target=~"$target"' in expr, key


def test_units_match_what_the_queries_measure(panels):
    units = {p["title"]: p["fieldConfig"]["defaults"].get("unit") for p in panels}
    assert units["Least free space"] == "bytes"
    assert units["Free space per directory"] == "bytes"
    assert units["Nearest build expiry"] in {"s", "dtdurations"}
    assert units["Time until build expiry per container"] in {"s", "dtdurations"}
    assert units["Estimated time until full"] in {"s", "dtdurations"}
    assert units["Poll duration"] == "s"
    assert units["Data age"] == "s"


def test_dates_are_given_to_grafana_in_milliseconds(panels):
    (table,) = [p for p in panels if p["title"] == "Build expiry dates"]
    date_units = [
        prop["value"]
        for override in table["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "unit"
    ]
    assert date_units == ["dateTimeAsIso"]
    assert any(
        "whatsapp_build_expiry_timestamp_seconds" in t["expr"] and t["expr"].endswith("* 1000")
        for t in table["targets"]
    )


def test_socket_state_timeline_maps_every_documented_state(panels):
    (timeline,) = [p for p in panels if p["type"] == "state-timeline"]
    texts = {
        option["text"]
        for mapping in timeline["fieldConfig"]["defaults"]["mappings"]
        for option in mapping["options"].values()
    }
    assert {"UP", "UP receiving offline", "SC", "DN", "UNK"} <= texts
    for state in ("UP", "UP receiving offline", "SC", "DN", "UNK"):
        assert f'state="{state}"' in timeline["targets"][0]["expr"]


def test_every_query_names_only_metrics_the_collector_exports(queries):
    for key, expr in queries.items():
        names = metric_names(substitute_variables(expr))
        assert names, f"{key}: no metric found in {expr!r}"
        assert names <= KNOWN_METRICS, f"{key}: unknown {sorted(names - KNOWN_METRICS)}"


def test_metric_name_extraction_sees_through_functions_and_matchers():
    expr = (
        'sum by (target, le) (rate(foo_total{a="b", c=~"x|y"}[5m])) / on (target) '
        'group_left (role) clamp_min(bar_bytes offset 5m, 1e-9) and count_values("v", baz)'
    )
    assert metric_names(expr) == {"foo_total", "bar_bytes", "baz"}


def test_every_query_parses_as_promql(queries, tmp_path):
    result = check_promql({k: substitute_variables(v) for k, v in queries.items()}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promql_check_rejects_an_invalid_query(tmp_path):
    result = check_promql({"broken": "sum by (target (whatsapp_up)"}, tmp_path)
    assert result.returncode != 0


def test_no_grafana_variable_is_left_after_substitution(queries):
    for key, expr in queries.items():
        assert "$" not in substitute_variables(expr), key
