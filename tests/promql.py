"""PromQL helpers shared by the dashboard and alert tests."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest

from whatsapp_support_exporter.output import families

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/whatsapp-support-exporter/whatsapp-support-exporter/blob/main/docs/runbook.md"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


# The public contract's metrics and their types. The metric table (output/families.py) is the
# source of truth for the names it already defines; names it does not define yet are accepted
# from this list, so rules and dashboards can be written against the contract while the table
# catches up.
CONTRACT_METRICS: dict[str, str] = {
    "whatsapp_up": "gauge",
    "whatsapp_free_space_bytes": "gauge",
    "whatsapp_socket_state": "gauge",
    "whatsapp_socket_connected": "gauge",
    "whatsapp_build_expiry_timestamp_seconds": "gauge",
    "whatsapp_multiconnect_enabled": "gauge",
    "whatsapp_role": "gauge",
    "whatsapp_shards_owned": "gauge",
    "whatsapp_shard_owned": "gauge",
    "whatsapp_schema_version": "gauge",
    "whatsapp_registered": "gauge",
    "whatsapp_build_info": "gauge",
    "whatsapp_container_info": "gauge",
    "whatsapp_clock_skew_seconds": "gauge",
    "whatsapp_exporter_poll_duration_seconds": "gauge",
    "whatsapp_exporter_last_success_timestamp_seconds": "gauge",
    "whatsapp_exporter_polls_total": "counter",
    "whatsapp_exporter_poll_errors_total": "counter",
    "whatsapp_exporter_logins_total": "counter",
    "whatsapp_exporter_invalid_fields_total": "counter",
    "whatsapp_exporter_build_info": "gauge",
    # Added in 0.2
    "whatsapp_exporter_config_last_reload_successful": "gauge",
    "whatsapp_exporter_config_last_reload_success_timestamp_seconds": "gauge",
    "whatsapp_target_info": "gauge",
    "whatsapp_exporter_shard_ordinal": "gauge",
    "whatsapp_exporter_total_shards": "gauge",
    "whatsapp_gateway_status": "gauge",
    "whatsapp_shards_configured": "gauge",
    "whatsapp_api_status": "gauge",
    "whatsapp_exporter_collector_success": "gauge",
    "whatsapp_exporter_collector_errors_total": "counter",
    # Added in 0.3: the Cloud API (Graph API); state sets are gauges
    "whatsapp_cloud_up": "gauge",
    "whatsapp_cloud_account_info": "gauge",
    "whatsapp_cloud_can_send_message": "gauge",
    "whatsapp_cloud_entity_can_send_message": "gauge",
    "whatsapp_cloud_entity_error_info": "gauge",
    "whatsapp_cloud_phone_number_info": "gauge",
    "whatsapp_cloud_phone_number_quality": "gauge",
    "whatsapp_cloud_phone_number_status": "gauge",
    "whatsapp_cloud_phone_number_platform": "gauge",
    "whatsapp_cloud_phone_number_throughput": "gauge",
    "whatsapp_cloud_phone_number_name_status": "gauge",
    "whatsapp_cloud_phone_number_can_send_message": "gauge",
    "whatsapp_cloud_phone_number_messaging_limit": "gauge",
    "whatsapp_cloud_phone_number_code_verified": "gauge",
    "whatsapp_cloud_phone_number_last_onboarded_timestamp_seconds": "gauge",
    "whatsapp_cloud_api_usage_ratio": "gauge",
    "whatsapp_exporter_cloud_polls_total": "counter",
    "whatsapp_exporter_cloud_poll_errors_total": "counter",
    "whatsapp_exporter_cloud_last_success_timestamp_seconds": "gauge",
    "whatsapp_exporter_cloud_poll_duration_seconds": "gauge",
}


def table_metric_types() -> dict[str, str]:
    """Name -> type ("gauge", "counter") of the families the metric table defines."""
    types = {
        name: str(getattr(family, "kind", None) or getattr(family, "type", ""))
        for name, family in families.FAMILIES.items()
    }
    for name in families.METRIC_NAMES:
        types.setdefault(name, CONTRACT_METRICS.get(name, ""))
    return types


TABLE_METRICS = table_metric_types()
METRIC_TYPES: dict[str, str] = {**CONTRACT_METRICS, **TABLE_METRICS}
KNOWN_METRICS = frozenset(METRIC_TYPES)

PROMQL_WORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a lexical approximation, no parser)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    expr = re.sub(r"(\boffset|@)\s*-?[0-9a-z.()]+", " ", expr)  # offset 5m, @ start()
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", " ", expr)  # numbers such as 1e-9
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = match.group(0)
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(word)
    return names


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed (Debian package prometheus, or a Prometheus release)"
        )
    return path


def mapping_text(mapping: dict[str, Any], value: float) -> str | None:
    """The text Grafana shows for ``value`` under one value or range mapping (None: no match)."""
    options = mapping["options"]
    if mapping["type"] == "range":
        low, high = options.get("from"), options.get("to")
        if (low is None or value >= low) and (high is None or value <= high):
            return str(options["result"].get("text"))
        return None
    if mapping["type"] == "value" and (hit := options.get(f"{value:g}")) is not None:
        return str(hit.get("text"))
    return None


# ---------------------------------------------------------------- the parsed tree


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
