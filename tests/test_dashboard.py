"""The Grafana dashboard: generated from code, importable, one variable per label, laid out."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.dashboard_json import (
    DASHBOARD,
    ROOT,
    Dashboard,
    panels_of,
    variable,
)

GENERATOR = ROOT / "grafana" / "dashboard.py"


def test_committed_json_is_what_the_generator_makes() -> None:
    made = subprocess.run(
        [sys.executable, str(GENERATOR)], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert made == DASHBOARD.read_text(), (
        "grafana/whatsapp-support-exporter.json is out of date: run "
        "python grafana/dashboard.py > grafana/whatsapp-support-exporter.json"
    )


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
