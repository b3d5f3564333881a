"""The Cloud API row: every documented state named, each phone number counted once."""

from __future__ import annotations

import re

import pytest

from tests.dashboard_json import (
    Panel,
)
from tests.promql import mapping_text
from whatsapp_support_exporter.output.cloud_families import (
    CAN_SEND_STATES,
    NUMBER_STATUSES,
    PLATFORMS,
    QUALITY_RATINGS,
)


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
