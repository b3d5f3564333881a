"""The dashboard is clean by dashboard-linter's rules, and each rule catches what it is for.

Each lint rule is a function returning its findings; a test shows the committed dashboard has
none, and another seeds one bad panel per rule and shows the rule catches it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import promql_parser as pp
import pytest

from tests.conftest import DATA_FAMILIES
from tests.dashboard_json import (
    RATE_INTERVAL,
    UNLIMITED_FREE_SPACE,
    VARIABLES,
    Dashboard,
    panels_of,
    parsed,
    queries,
    substitute,
    where,
)
from tests.promql import KNOWN_METRICS, mapping_text, matchers, selectors, walk

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
