"""The dashboard: its variables, links and rows, as Grafana imports it."""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from .cloud_api import cloud_api
from .cluster import cluster
from .containers import build_expiry, connection, storage
from .exporters import exporter_health, fleet
from .overview import overview
from .panels import (
    DS,
)

UID = "whatsapp-support"
TITLE = "WhatsApp Business API (support)"
# The Grafana release the SDK's schema is generated for (see the pinned SDK version).
GRAFANA_VERSION = "11.6.0"
RUNBOOK = (
    "https://github.com/whatsapp-support-exporter/whatsapp-support-exporter/blob/main/"
    "docs/runbook.md"
)


def label_variable(name: str, label: str, definition: str, description: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DS)
        .query({"query": definition, "refId": f"{name}-variable", "qryType": 1})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


PANEL_NAMES = {
    "bargauge": "Bar gauge",
    "stat": "Stat",
    "state-timeline": "State timeline",
    "table": "Table",
    "timeseries": "Time series",
}
ROWS = (
    ("Overview", overview),
    ("Cloud API", cloud_api),
    ("Build expiry", build_expiry),
    ("Storage", storage),
    ("Connection", connection),
    ("Cluster", cluster),
    ("Exporter fleet", fleet),
    ("Exporter", exporter_health),
)


def build() -> dict[str, Any]:
    """The dashboard as Grafana imports it (with ``__inputs`` and ``__requires``)."""
    board = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .description(
            "WhatsApp Business API On-Premises clients as seen by whatsapp-support-exporter "
            "(GET /v1/support, /v1/health, /v1/account/shards): build expiry, free space, "
            "socket and gateway, cluster shards and roles, and the exporters themselves; and "
            "the Cloud API's accounts and phone numbers (Graph API): quality, status, "
            "messaging limit, health, rate limit usage, and the migration off On-Premises."
        )
        .tags(["whatsapp", "whatsapp-support-exporter"])
        .readonly()
        .timezone("utc")
        .time("now-6h", "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink("Runbook")
            .type(dm.DashboardLinkType.LINK)
            .icon("doc")
            .url(RUNBOOK)
            .target_blank(True)
        )
        .annotation(
            dash.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .built_in(1)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
        .with_variable(
            dash.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .description("The Prometheus that scrapes the exporters.")
        )
        .with_variable(
            label_variable(
                "job",
                "Job",
                "label_values(whatsapp_exporter_build_info, job)",
                "Prometheus jobs scraping an exporter (sidecars, central, sharded).",
            )
        )
        .with_variable(
            label_variable(
                "instance",
                "Instance",
                'label_values(whatsapp_exporter_build_info{job=~"$job"}, instance)',
                "Exporter processes: one per sidecar or replica.",
            )
        )
        .with_variable(
            label_variable(
                "target",
                "Target",
                'label_values(whatsapp_up{job=~"$job", instance=~"$instance"}, target)',
                "WhatsApp clients by their configured name (two sidecars may both say local).",
            )
        )
        .with_variable(
            label_variable(
                "account",
                "Cloud API account",
                'label_values(whatsapp_cloud_up{job=~"$job", instance=~"$instance"}, account)',
                "WhatsApp Business Accounts on the Cloud API by their configured name.",
            )
        )
    )
    for title, panels in ROWS:
        board = board.with_row(dash.Row(title))
        for panel in panels():
            board = board.with_panel(panel)
    built: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for number, panel in enumerate(built["panels"], start=1):
        panel["id"] = number
    panel_types = sorted({p["type"] for p in built["panels"]} - {"row"})
    return {
        # The data source is the `datasource` variable, so an import asks for no input.
        "__inputs": [],
        "__elements": {},
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *(
                {"type": "panel", "id": t, "name": PANEL_NAMES[t], "version": ""}
                for t in panel_types
            ),
        ],
        "id": None,
        **built,
    }
