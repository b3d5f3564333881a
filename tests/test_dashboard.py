"""The Grafana dashboard: generated from code, importable, and clean by dashboard-linter's rules.

Each lint rule is a function returning its findings; a test shows the committed dashboard has
none, and another seeds one bad panel per rule and shows the rule catches it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest

from tests.conftest import DATA_FAMILIES
from tests.promql import KNOWN_METRICS, mapping_text
from whatsapp_support_exporter.cli.settings import load_settings
from whatsapp_support_exporter.output.cloud_families import (
    CAN_SEND_STATES,
    NUMBER_STATUSES,
    PLATFORMS,
    QUALITY_RATINGS,
)
from whatsapp_support_exporter.output.families import (
    API_STATUSES,
    GATEWAY_STATES,
    ROLES,
    SOCKET_STATES,
)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "whatsapp-support-exporter.json"
GENERATOR = ROOT / "grafana" / "dashboard.py"
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
RATES = frozenset({"rate", "irate", "increase"})
# Aggregations that add series up (max and min pick one, so they may merge duplicates).
ADDING = frozenset({"sum", "count", "avg", "group", "count_values", "stddev", "stdvar"})
EXPORTER_SERIES = frozenset(
    {
        "whatsapp_exporter_build_info",
        "whatsapp_exporter_shard_ordinal",
        "whatsapp_exporter_total_shards",
        "whatsapp_exporter_config_last_reload_successful",
        "whatsapp_exporter_config_last_reload_success_timestamp_seconds",
    }
)


def is_cloud(name: str | None) -> bool:
    """A Cloud API series: about an ``account`` (and its numbers), never a ``target``."""
    return (name or "").startswith(("whatsapp_cloud_", "whatsapp_exporter_cloud_"))


# ---------------------------------------------------------------- helpers


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


def children(node: pp.Expr) -> list[pp.Expr]:
    if isinstance(node, pp.AggregateExpr):
        return [node.expr] + ([node.param] if isinstance(node.param, pp.Expr) else [])
    if isinstance(node, pp.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, pp.Call):
        return [arg for arg in node.args if isinstance(arg, pp.Expr)]
    if isinstance(node, pp.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
        return [node.expr]
    return []


def walk(
    node: pp.Expr, parents: tuple[pp.Expr, ...] = ()
) -> Iterator[tuple[pp.Expr, tuple[pp.Expr, ...]]]:
    """Every node with its ancestors, nearest last."""
    yield node, parents
    for child in children(node):
        yield from walk(child, (*parents, node))


def selectors(node: pp.Expr) -> Iterator[pp.VectorSelector]:
    for sub, _ in walk(node):
        if isinstance(sub, pp.VectorSelector):
            yield sub


def matchers(selector: pp.VectorSelector) -> dict[str, str]:
    return {m.name: m.value for m in selector.matchers.matchers}


def parsed(dashboard: Dashboard) -> Iterator[tuple[Panel, dict[str, Any], pp.Expr]]:
    """Every query that parses (a query that does not is the PromQL rule's finding)."""
    for panel, target in queries(dashboard):
        try:
            yield panel, target, pp.parse(substitute(target.get("expr", "")))
        except ValueError:
            continue


# ---------------------------------------------------------------- lint rules


def panel_title_description_unit(dashboard: Dashboard) -> list[str]:
    found = []
    for panel in panels_of(dashboard):
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if not panel.get("title"):
            found.append(f"panel {panel.get('id')} has no title")
        if not panel.get("description"):
            found.append(f"{where(panel)} has no description")
        if not defaults.get("unit") and not defaults.get("mappings"):
            found.append(f"{where(panel)} has neither a unit nor value mappings")
    return found


def target_promql_valid(dashboard: Dashboard) -> list[str]:
    found = []
    for panel, target in queries(dashboard):
        expr = substitute(target.get("expr", ""))
        if "$" in expr:
            found.append(f"{where(panel, target)}: unknown variable in {expr!r}")
            continue
        try:
            pp.parse(expr)
        except ValueError as err:
            found.append(f"{where(panel, target)}: invalid PromQL: {err}")
    return found


def target_rate_interval(dashboard: Dashboard) -> list[str]:
    found = []
    for panel, target, expr in parsed(dashboard):
        for node, _ in walk(expr):
            if isinstance(node, pp.Call) and node.func.name in RATES:
                ranges = [a.range for a in node.args if isinstance(a, pp.MatrixSelector)]
                if ranges != [RATE_INTERVAL]:
                    found.append(
                        f"{where(panel, target)}: {node.func.name} not over $__rate_interval"
                    )
    return found


def target_counter_agg(dashboard: Dashboard) -> list[str]:
    """A counter (``_total``) means something only as a rate or an increase."""
    found = []
    for panel, target, expr in parsed(dashboard):
        for node, parents in walk(expr):
            if not isinstance(node, pp.VectorSelector) or not (node.name or "").endswith("_total"):
                continue
            inside = (
                len(parents) >= 2
                and isinstance(parents[-1], pp.MatrixSelector)
                and isinstance(parents[-2], pp.Call)
                and parents[-2].func.name in RATES
            )
            if not inside:
                found.append(f"{where(panel, target)}: counter {node.name} outside rate/increase")
    return found


def target_our_metrics(dashboard: Dashboard) -> list[str]:
    found = []
    for panel, target, expr in parsed(dashboard):
        for selector in selectors(expr):
            name = selector.name or ""
            if name != "up" and name not in KNOWN_METRICS:
                found.append(f"{where(panel, target)}: selects {name or selector!s}, not ours")
    return found


def datasource_variable(dashboard: Dashboard) -> list[str]:
    found = []
    for panel in panels_of(dashboard):
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            found.append(f"{where(panel)} does not use ${{datasource}}")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != "${datasource}":
                found.append(f"{where(panel, target)} does not use ${{datasource}}")
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query" and var.get("datasource", {}).get("uid") != "${datasource}":
            found.append(f"variable {var['name']} does not use ${{datasource}}")
    return found


def unused_inputs(dashboard: Dashboard) -> list[str]:
    rest = json.dumps({k: v for k, v in dashboard.items() if k != "__inputs"})
    return [
        f"input {i['name']} is declared but nothing uses ${{{i['name']}}}"
        for i in dashboard.get("__inputs", [])
        if f"${{{i['name']}}}" not in rest
    ]


def selectors_filtered(dashboard: Dashboard) -> list[str]:
    """Every series is filtered by the job and instance variables, target series by target,
    Cloud API series by account."""
    found = []
    for panel, target, expr in parsed(dashboard):
        for selector in selectors(expr):
            wanted = ["job", "instance"]
            if is_cloud(selector.name):
                wanted.append("account")
            elif selector.name not in EXPORTER_SERIES:
                wanted.append("target")
            have = matchers(selector)
            missing = [label for label in wanted if have.get(label) != VARIABLES[f"${label}"]]
            if missing:
                found.append(f"{where(panel, target)}: {selector.name} not filtered by {missing}")
    return found


def exporters_kept_apart(dashboard: Dashboard) -> list[str]:
    """Adding aggregations keep job and instance (and target, over a target's data).

    Two sidecars both naming their target "local" are two clients: adding them up, or adding
    two clusters' shards, is wrong. Counting may drop what a ``max by`` deduplicated first
    (one series per container or target name, whoever exports it). A bare ``sum(...)`` is a
    fleet total: only stat panels. Cloud API series keep ``account`` the same way, unless a
    ``max`` by ``phone_number_id`` (Meta's id of a number, the same everywhere) came first.
    """
    found = []
    for panel, target, expr in parsed(dashboard):
        for node, _ in walk(expr):
            if not isinstance(node, pp.AggregateExpr) or str(node.op) not in ADDING:
                continue
            modifier = node.modifier
            without = modifier is not None and modifier.type == pp.AggModifierType.Without
            kept = set(modifier.labels) if modifier is not None else set()
            if isinstance(node.param, pp.StringLiteral) and not without:
                kept.add(node.param.val)  # count_values adds the label its values go to
            if not kept and not without:
                if panel["type"] != "stat":
                    found.append(f"{where(panel, target)}: fleet total {node.op}() outside a stat")
                continue
            wanted = {"job", "instance"}
            if any(s.name in DATA_FAMILIES for s in selectors(node.expr)):
                wanted.add("target")
            if any(is_cloud(s.name) for s in selectors(node.expr)):
                wanted.add("account")
            operand = node.expr
            while isinstance(operand, pp.ParenExpr):
                operand = operand.expr
            if (
                isinstance(operand, pp.AggregateExpr)
                and str(operand.op) in {"max", "min"}
                and operand.modifier is not None
                and operand.modifier.type == pp.AggModifierType.By
            ):
                wanted &= set(operand.modifier.labels)  # counting what a max deduplicated
            dropped = wanted & kept if without else wanted - kept
            if dropped:
                found.append(f"{where(panel, target)}: {node.op} merges {sorted(dropped)}")
    return found


def unlimited_handled(dashboard: Dashboard) -> list[str]:
    """Free space shows "unlimited" for about 2^63 bytes, and no forecast extrapolates it."""
    found = []
    for panel, target, expr in parsed(dashboard):
        if not any(s.name == "whatsapp_free_space_bytes" for s in selectors(expr)):
            continue
        filtered = any(
            isinstance(n, pp.BinaryExpr)
            and str(n.op) == "<"
            and isinstance(n.rhs, pp.NumberLiteral)
            and n.rhs.val <= UNLIMITED_FREE_SPACE
            for n, _ in walk(expr)
        )
        forecast = any(
            isinstance(n, pp.Call) and n.func.name in {"predict_linear", "deriv"}
            for n, _ in walk(expr)
        )
        mappings = panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", [])
        mapped = any(mapping_text(m, UNLIMITED_FREE_SPACE) == "unlimited" for m in mappings)
        if forecast and not filtered:
            found.append(f"{where(panel, target)}: forecast includes unlimited free space")
        elif not filtered and not mapped:
            found.append(f"{where(panel, target)}: about 2^63 bytes is not shown as unlimited")
    return found


RULES: dict[str, Callable[[Dashboard], list[str]]] = {
    "panel-title-description-unit": panel_title_description_unit,
    "target-promql": target_promql_valid,
    "target-rate-interval": target_rate_interval,
    "target-counter-agg": target_counter_agg,
    "target-our-metrics": target_our_metrics,
    "datasource-variable": datasource_variable,
    "unused-inputs": unused_inputs,
    "selectors-filtered": selectors_filtered,
    "exporters-kept-apart": exporters_kept_apart,
    "unlimited-free-space": unlimited_handled,
}


def seed_panel(dashboard: Dashboard, **changes: Any) -> Dashboard:
    """The dashboard with one more panel, a copy of a good one with ``changes`` applied."""
    bad = copy.deepcopy(dashboard)
    (template,) = [p for p in panels_of(bad) if p["title"] == "Poll duration"]
    panel = copy.deepcopy(template)
    panel.update(title="Seeded", id=999)
    expr = changes.pop("expr", None)
    if expr is not None:
        panel["targets"] = [{**panel["targets"][0], "expr": expr}]
    for key, value in changes.items():
        if key == "unit":
            panel["fieldConfig"]["defaults"].pop("unit", None)
        else:
            panel[key] = value
    bad["panels"].append(panel)
    return bad


def with_unused_input(dashboard: Dashboard) -> Dashboard:
    bad = copy.deepcopy(dashboard)
    bad["__inputs"] = [{"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}]
    return bad


def with_unfiltered_variable(dashboard: Dashboard) -> Dashboard:
    bad = copy.deepcopy(dashboard)
    bad["templating"]["list"][1]["datasource"] = {"type": "prometheus", "uid": "prom-1"}
    return bad


S = '{job=~"$job", instance=~"$instance", target=~"$target"}'
A = '{job=~"$job", instance=~"$instance", account=~"$account"}'
FREE = f"whatsapp_free_space_bytes{S}"
SEEDS: list[tuple[str, Callable[[Dashboard], Dashboard]]] = [
    ("panel-title-description-unit", lambda d: seed_panel(d, description="")),
    ("panel-title-description-unit", lambda d: seed_panel(d, unit=None)),
    ("target-promql", lambda d: seed_panel(d, expr=f"sum by (target (whatsapp_up{S})")),
    ("target-promql", lambda d: seed_panel(d, expr="whatsapp_up{host=~'$host'}")),
    (
        "target-rate-interval",
        lambda d: seed_panel(
            d, expr=f"sum by (job, instance, target) (rate(whatsapp_exporter_polls_total{S}[5m]))"
        ),
    ),
    ("target-counter-agg", lambda d: seed_panel(d, expr=f"whatsapp_exporter_polls_total{S}")),
    (
        "target-our-metrics",
        lambda d: seed_panel(d, expr='node_filesystem_avail_bytes{job=~"$job"}'),
    ),
    (
        "datasource-variable",
        lambda d: seed_panel(d, datasource={"type": "prometheus", "uid": "prom-1"}),
    ),
    ("datasource-variable", with_unfiltered_variable),
    ("unused-inputs", with_unused_input),
    ("selectors-filtered", lambda d: seed_panel(d, expr='whatsapp_up{target=~"$target"}')),
    (
        "selectors-filtered",
        lambda d: seed_panel(d, expr='whatsapp_cloud_up{job=~"$job", instance=~"$instance"}'),
    ),
    (
        "exporters-kept-apart",
        lambda d: seed_panel(d, expr=f"sum by (target, shard) (whatsapp_shard_owned{S})"),
    ),
    ("exporters-kept-apart", lambda d: seed_panel(d, expr=f"count(whatsapp_up{S})")),
    (
        "exporters-kept-apart",
        lambda d: seed_panel(
            d, expr=f"count by (job, instance, quality) (whatsapp_cloud_phone_number_quality{A})"
        ),
    ),
    (
        "exporters-kept-apart",
        lambda d: seed_panel(
            d, expr=f'count_values("limit", whatsapp_cloud_phone_number_messaging_limit{A})'
        ),
    ),
    (
        "exporters-kept-apart",
        lambda d: seed_panel(
            d, expr=f"count by (job, target) (max by (job, instance, target) (whatsapp_up{S}))"
        ),
    ),
    (
        "unlimited-free-space",
        lambda d: seed_panel(d, expr=f"max by (job, instance, target) ({FREE})"),
    ),
    (
        "unlimited-free-space",
        lambda d: seed_panel(
            d,
            expr=f"predict_linear({FREE}[6h], 86400)",
            fieldConfig={
                "defaults": {"unit": "bytes", "mappings": dashboard_mappings(d)},
                "overrides": [],
            },
        ),
    ),
]


def dashboard_mappings(dashboard: Dashboard) -> list[dict[str, Any]]:
    (panel,) = [p for p in panels_of(dashboard) if p["title"] == "Free space now"]
    mappings: list[dict[str, Any]] = panel["fieldConfig"]["defaults"]["mappings"]
    return mappings


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dashboard() -> Dashboard:
    loaded: Dashboard = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def panels(dashboard: Dashboard) -> dict[str, Panel]:
    return {p["title"]: p for p in panels_of(dashboard)}


def variable(dashboard: Dashboard, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    assert len(found) == 1, name
    return found[0]


# ---------------------------------------------------------------- tests


def test_committed_json_is_what_the_generator_makes() -> None:
    made = subprocess.run(
        [sys.executable, str(GENERATOR)], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert made == DASHBOARD.read_text(), (
        "grafana/whatsapp-support-exporter.json is out of date: run "
        "python grafana/dashboard.py > grafana/whatsapp-support-exporter.json"
    )


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_dashboard_passes_lint_rule(dashboard: Dashboard, rule: str) -> None:
    assert RULES[rule](dashboard) == []


@pytest.mark.parametrize(
    ("rule", "seed"), SEEDS, ids=[f"{rule}-{i}" for i, (rule, _) in enumerate(SEEDS)]
)
def test_each_lint_rule_catches_a_seeded_bad_panel(
    dashboard: Dashboard, rule: str, seed: Callable[[Dashboard], Dashboard]
) -> None:
    findings = RULES[rule](seed(dashboard))
    assert findings, f"{rule} did not catch the seeded problem"


def test_every_lint_rule_has_a_seed_it_catches() -> None:
    assert {rule for rule, _ in SEEDS} == set(RULES)


def test_import_asks_for_nothing_and_requires_every_panel_type(dashboard: Dashboard) -> None:
    assert dashboard["__inputs"] == []  # the datasource variable picks the Prometheus
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= required
    used = {p["type"] for p in panels_of(dashboard)}
    assert {r["id"] for r in dashboard["__requires"] if r["type"] == "panel"} == used


def test_dashboard_has_a_stable_uid_and_is_read_only(dashboard: Dashboard) -> None:
    assert dashboard["uid"] == "whatsapp-support"
    assert dashboard["editable"] is False
    assert dashboard["id"] is None
    assert dashboard["schemaVersion"] >= 39


def test_datasource_variable_offers_prometheus_data_sources(dashboard: Dashboard) -> None:
    ds = variable(dashboard, "datasource")
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")


@pytest.mark.parametrize(
    ("name", "definition"),
    [
        ("job", "label_values(whatsapp_exporter_build_info, job)"),
        ("instance", 'label_values(whatsapp_exporter_build_info{job=~"$job"}, instance)'),
        ("target", 'label_values(whatsapp_up{job=~"$job", instance=~"$instance"}, target)'),
        (
            "account",
            'label_values(whatsapp_cloud_up{job=~"$job", instance=~"$instance"}, account)',
        ),
    ],
)
def test_job_instance_target_and_account_variables_come_from_label_values_and_allow_all(
    dashboard: Dashboard, name: str, definition: str
) -> None:
    var = variable(dashboard, name)
    assert var["type"] == "query"
    assert var["query"]["query"] == definition
    assert var["multi"] is True
    assert var["includeAll"] is True
    assert var["allValue"] == ".*"


def test_panel_ids_are_unique_and_panels_do_not_overlap(dashboard: Dashboard) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_unlimited_free_space_reads_unlimited_and_real_sizes_keep_their_unit(
    panels: dict[str, Panel],
) -> None:
    for title in ("Least free space", "Free space now", "Free space per directory"):
        defaults = panels[title]["fieldConfig"]["defaults"]
        assert defaults["unit"] == "bytes"
        texts = [mapping_text(m, UNLIMITED_FREE_SPACE) for m in defaults["mappings"]]
        assert "unlimited" in texts, title
        assert all(mapping_text(m, 14_269_902_848) is None for m in defaults["mappings"]), title


def test_data_age_turns_red_when_the_exporter_withdraws_stale_data(
    panels: dict[str, Panel], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("WA_")]:
        monkeypatch.delenv(name)
    stale_after = load_settings(["--demo"]).stale_after_seconds
    defaults = panels["Data age"]["fieldConfig"]["defaults"]
    red = [s["value"] for s in defaults["thresholds"]["steps"] if s["color"] == "red"]
    assert red == [stale_after]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"


@pytest.mark.parametrize(
    ("title", "metric", "label", "states"),
    [
        ("Socket state", "whatsapp_socket_state", "state", SOCKET_STATES),
        ("Gateway status per container", "whatsapp_gateway_status", "state", GATEWAY_STATES),
        ("Role per container", "whatsapp_role", "role", ROLES),
        ("API status", "whatsapp_api_status", "status", API_STATUSES),
    ],
)
def test_state_timelines_name_every_documented_state(
    panels: dict[str, Panel], title: str, metric: str, label: str, states: tuple[str, ...]
) -> None:
    panel = panels[title]
    assert panel["type"] == "state-timeline"
    expr = panel["targets"][0]["expr"]
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    shown = {mapping_text(mapping, code) for code in range(len(states) + 1)}
    assert shown == {*states, "undocumented"}
    codes = re.findall(rf'(\d+) \* max by \([^)]*\) \({metric}\{{[^}}]*{label}="([^"]+)"', expr)
    assert {state for _, state in codes} == set(states)
    for code, state in codes:
        assert mapping_text(mapping, int(code)) == state
    assert metric in expr


def test_cluster_row_compares_configured_owned_and_connected_shards(
    panels: dict[str, Panel],
) -> None:
    panel = panels["Shards per cluster"]
    exprs = {t["refId"]: t["expr"] for t in panel["targets"]}
    assert "whatsapp_shards_configured" in exprs["A"]
    assert 'shard=~"[0-9]+"' in exprs["B"]  # shards 0..N-1: the control shard -1 is not one
    assert "whatsapp_gateway_status{" in exprs["C"] and 'state="connected"' in exprs["C"]
    renamed = panel["transformations"][1]["options"]["renameByName"]
    assert set(renamed.values()) == {"configured", "owned", "connected", "missing"}


def test_fleet_row_shows_targets_per_shard_and_reload_status(panels: dict[str, Panel]) -> None:
    assert "whatsapp_exporter_shard_ordinal" in panels["Targets per shard"]["targets"][0]["expr"]
    reload = panels["Config reload status"]
    assert "whatsapp_exporter_config_last_reload_successful" in reload["targets"][0]["expr"]
    (mapping,) = reload["fieldConfig"]["defaults"]["mappings"]
    assert (mapping_text(mapping, 1), mapping_text(mapping, 0)) == ("ok", "failed")


def test_dates_are_given_to_grafana_in_milliseconds(panels: dict[str, Panel]) -> None:
    table = panels["Build expiry dates"]
    units = [
        prop["value"]
        for override in table["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "unit"
    ]
    assert units == ["dateTimeAsIso"]
    assert table["targets"][0]["expr"].endswith("* 1000")


def test_container_totals_count_a_cluster_container_once_whoever_exports_it(
    panels: dict[str, Panel],
) -> None:
    expr = panels["Sockets connected"]["targets"][0]["expr"]
    assert "max by (job, target, host, container_id)" in expr
    assert re.search(r'max by \(job, instance, target\) \([^)]*host=""', expr)


def test_clock_skew_is_a_window_average_against_the_two_second_and_alert_thresholds(
    panels: dict[str, Panel],
) -> None:
    """One reading jumps between 0 and -1 s (device_iso8601 has whole seconds): the panel
    averages over minutes and marks where a clock is off, ±2 s and the alert's ±60 s."""
    panel = panels["Clock skew (5 min average)"]
    (node,) = [
        n
        for n, _ in walk(pp.parse(substitute(panel["targets"][0]["expr"])))
        if isinstance(n, pp.Call) and n.func.name == "avg_over_time"
    ]
    (window,) = [a.range for a in node.args if isinstance(a, pp.MatrixSelector)]
    assert window >= timedelta(minutes=5)
    defaults = panel["fieldConfig"]["defaults"]
    colors = {s["value"]: s["color"] for s in defaults["thresholds"]["steps"]}
    assert colors == {None: "red", -60: "orange", -2: "green", 2: "orange", 60: "red"}
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert defaults["custom"]["axisSoftMin"] <= -2 and defaults["custom"]["axisSoftMax"] >= 2
    alerts = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    skew_alert = alerts.split("alert: WhatsAppClockSkew")[1].split("for:")[0]
    assert "abs(whatsapp_clock_skew_seconds)) > 60" in skew_alert


@pytest.mark.parametrize(
    ("title", "metric", "label", "states"),
    [
        (
            "Can send per number",
            "whatsapp_cloud_phone_number_can_send_message",
            "status",
            CAN_SEND_STATES,
        ),
        (
            "Quality rating per number",
            "whatsapp_cloud_phone_number_quality",
            "quality",
            QUALITY_RATINGS,
        ),
        ("Status per number", "whatsapp_cloud_phone_number_status", "status", NUMBER_STATUSES),
    ],
)
def test_cloud_timelines_name_every_documented_state_per_number(
    panels: dict[str, Panel], title: str, metric: str, label: str, states: tuple[str, ...]
) -> None:
    panel = panels[title]
    assert panel["type"] == "state-timeline"
    expr = panel["targets"][0]["expr"]
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    keep = r"max by \(job, instance, account, phone_number_id\)"
    codes = re.findall(rf'(\d+) \* {keep} \({metric}\{{[^}}]*{label}="([^"]+)"', expr)
    assert {state for _, state in codes} == set(states)
    for code, state in codes:
        assert mapping_text(mapping, int(code)) == state
    assert mapping_text(mapping, 0) == "undocumented"


def test_phone_numbers_table_names_every_state_of_every_column(panels: dict[str, Panel]) -> None:
    panel = panels["Phone numbers"]
    renamed = panel["transformations"][1]["options"]["renameByName"]
    columns = {t["refId"]: renamed.get(f"Value #{t['refId']}") for t in panel["targets"]}
    assert columns == {
        "A": None,  # the info series: its labels are the number and name columns
        "B": "platform",
        "C": "status",
        "D": "can send",
        "E": "quality",
        "F": "limit",
    }
    mappings = {
        o["matcher"]["options"]: p["value"]
        for o in panel["fieldConfig"]["overrides"]
        for p in o["properties"]
        if p["id"] == "mappings"
    }
    for column, states in (
        ("platform", PLATFORMS),
        ("status", NUMBER_STATUSES),
        ("can send", CAN_SEND_STATES),
        ("quality", QUALITY_RATINGS),
    ):
        (mapping,) = mappings[column]
        shown = {mapping_text(mapping, code) for code in range(len(states) + 1)}
        assert shown == {*states, "undocumented"}, column


def test_an_unlimited_messaging_limit_reads_unlimited_and_tiers_keep_their_number(
    panels: dict[str, Panel],
) -> None:
    (limit,) = [
        p["value"]
        for o in panels["Phone numbers"]["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "limit"
        for p in o["properties"]
        if p["id"] == "mappings"
    ]
    assert {mapping_text(m, float("inf")) for m in limit} == {"unlimited"}
    assert {mapping_text(m, 100_000) for m in limit} == {None}
    expr = panels["Numbers by messaging limit"]["targets"][0]["expr"]
    assert '"limit", "unlimited", "limit", "[+]Inf"' in expr  # +Inf is TIER_UNLIMITED


@pytest.mark.parametrize(
    ("title", "metric", "label"),
    [
        ("Numbers by quality rating", "whatsapp_cloud_phone_number_quality", "quality"),
        ("Numbers by status", "whatsapp_cloud_phone_number_status", "status"),
        ("Numbers by platform (migration)", "whatsapp_cloud_phone_number_platform", "platform"),
    ],
)
def test_cloud_totals_count_each_number_once_whoever_reports_it(
    panels: dict[str, Panel], title: str, metric: str, label: str
) -> None:
    expr = panels[title]["targets"][0]["expr"]
    assert expr.startswith(f"sum by ({label}) (max by (phone_number_id, {label}) ({metric}{{")


def test_the_migration_panel_draws_numbers_by_platform_over_time(panels: dict[str, Panel]) -> None:
    panel = panels["Numbers by platform (migration)"]
    assert panel["type"] == "timeseries"
    (target,) = panel["targets"]
    assert target["range"] is True and target["legendFormat"] == "{{platform}}"
    colours = {
        o["matcher"]["options"]: p["value"]["fixedColor"]
        for o in panel["fieldConfig"]["overrides"]
        for p in o["properties"]
    }
    assert colours["ON_PREMISE"] == "red" and colours["CLOUD_API"] == "green"
