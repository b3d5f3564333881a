"""The On-Premises and exporter rows: every documented state named, totals counted once, units."""

from __future__ import annotations

import os
import re
from datetime import timedelta

import promql_parser as pp
import pytest

from tests.dashboard_json import (
    ROOT,
    UNLIMITED_FREE_SPACE,
    Panel,
    substitute,
)
from tests.promql import mapping_text, walk
from whatsapp_support_exporter.cli.settings import load_settings
from whatsapp_support_exporter.output.families import (
    API_STATUSES,
    GATEWAY_STATES,
    ROLES,
    SOCKET_STATES,
)
from whatsapp_support_exporter.upstream.errors import Reason


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


def test_poll_errors_panel_names_every_reason_the_exporter_counts(
    panels: dict[str, Panel],
) -> None:
    description = panels["Poll errors by reason"]["description"]
    listed = re.search(r"by reason \(([^);]+)", description)
    assert listed is not None
    assert listed.group(1).split(", ") == [str(reason) for reason in Reason]


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
