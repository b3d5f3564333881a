"""The alerting rules load, are tested by promtool, follow the conventions and have a runbook."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.promql import KNOWN_METRICS, metric_names, promtool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/whatsapp-support-exporter/whatsapp-support-exporter/blob/main/docs/runbook.md"

# Series Prometheus itself adds to every scrape.
PROMETHEUS_METRICS = frozenset({"up"})


REQUIRED_ALERTS = {
    "WhatsAppTargetDown",
    "WhatsAppDataStale",
    "WhatsAppSocketDisconnected",
    "WhatsAppBuildExpiresSoon",
    "WhatsAppBuildExpiresVerySoon",
    "WhatsAppBuildExpired",
    "WhatsAppFreeSpaceLow",
    "WhatsAppFreeSpaceRunningOut",
    "WhatsAppNumberNotRegistered",
    "WhatsAppNoPrimaryMaster",
    "WhatsAppMultiplePrimaryMasters",
    "WhatsAppShardOwnedTwice",
    "WhatsAppMixedBuilds",
    "WhatsAppMixedSchemaVersions",
    "WhatsAppClockSkew",
    "WhatsAppExporterAuthFailing",
    "WhatsAppExporterRateLimited",
}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, check=False, cwd=ROOT
    )


@pytest.fixture(scope="module")
def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def rule_tests() -> dict[str, Any]:
    return yaml.safe_load(RULE_TESTS.read_text())


@pytest.fixture(scope="module")
def runbook_anchors() -> dict[str, str]:
    """Level-2 headings of the runbook by their GitHub anchor."""
    headings = re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(h): h for h in headings}


def test_promtool_check_rules_accepts_the_rules_file():
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass():
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_fail_when_an_alert_is_broken(tmp_path):
    """Guards the guard: the unit tests notice an alert that can no longer fire."""
    broken = RULES.read_text().replace(
        "expr: whatsapp_registered == 0", "expr: whatsapp_registered == 2"
    )
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "alerts_test.yml").write_text(RULE_TESTS.read_text())
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode != 0


def test_rule_tests_load_the_rules_file(rule_tests):
    assert [RULE_TESTS.parent / f for f in rule_tests["rule_files"]] == [RULES]


def test_every_issue_required_alert_exists(alerts):
    assert {a["alert"] for a in alerts} >= REQUIRED_ALERTS


def test_alert_names_are_unique_and_camelcase_with_the_whatsapp_prefix(alerts):
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"WhatsApp(?:[A-Z][a-z0-9]*)+", name), name


def test_every_alert_has_for_severity_and_the_three_annotations(alerts):
    for alert in alerts:
        name = alert["alert"]
        assert re.fullmatch(r"\d+[smh]", str(alert.get("for", ""))), f"{name}: no for:"
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}, name
        for annotation in ("summary", "description", "runbook_url"):
            assert alert["annotations"].get(annotation, "").strip(), f"{name}: no {annotation}"


def test_every_runbook_url_points_at_the_alerts_own_runbook_section(alerts, runbook_anchors):
    for alert in alerts:
        url = urlsplit(alert["annotations"]["runbook_url"])
        assert url._replace(fragment="").geturl() == RUNBOOK_URL, alert["alert"]
        assert url.fragment == github_anchor(alert["alert"]), alert["alert"]
        assert runbook_anchors.get(url.fragment) == alert["alert"], alert["alert"]


def test_every_runbook_section_says_what_it_means_what_to_check_and_what_to_do(alerts):
    sections = re.split(r"^## ", RUNBOOK.read_text(), flags=re.MULTILINE)[1:]
    by_title = {s.splitlines()[0].strip(): s for s in sections}
    for alert in alerts:
        section = by_title[alert["alert"]]
        for part in ("**Meaning.**", "**Check.**", "**Act.**"):
            assert part in section, f"{alert['alert']}: {part} missing"


def test_runbook_has_no_section_for_an_alert_that_does_not_exist(alerts, runbook_anchors):
    assert set(runbook_anchors.values()) == {a["alert"] for a in alerts}


def test_runbook_links_within_the_page_resolve(runbook_anchors):
    for anchor in re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text()):
        assert anchor in runbook_anchors, anchor


def test_every_alert_is_made_to_fire_by_a_rule_test(alerts, rule_tests):
    fired = {
        case["alertname"]
        for test in rule_tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    missing = {a["alert"] for a in alerts} - fired
    assert not missing, f"no rule test makes these fire: {sorted(missing)}"


def test_every_alert_is_shown_silent_by_a_rule_test(alerts, rule_tests):
    silent = {
        case["alertname"]
        for test in rule_tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts") == []
    }
    missing = {a["alert"] for a in alerts} - silent
    assert not missing, f"no rule test shows these silent: {sorted(missing)}"


def test_rule_tests_name_only_existing_alerts(alerts, rule_tests):
    tested = {
        case["alertname"]
        for test in rule_tests["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert tested <= {a["alert"] for a in alerts}


def test_alert_expressions_name_only_known_metrics(alerts):
    for alert in alerts:
        names = metric_names(alert["expr"])
        assert names, alert["alert"]
        unknown = names - KNOWN_METRICS - PROMETHEUS_METRICS
        assert not unknown, f"{alert['alert']}: unknown metrics {sorted(unknown)}"


def test_rule_test_input_series_name_only_known_metrics(rule_tests):
    for test in rule_tests["tests"]:
        for series in test["input_series"]:
            name = series["series"].split("{", 1)[0]
            assert name in KNOWN_METRICS | PROMETHEUS_METRICS, name


def test_github_anchor_matches_githubs_slugs():
    assert github_anchor("WhatsAppTargetDown") == "whatsapptargetdown"
    assert github_anchor("Free space: low!") == "free-space-low"
