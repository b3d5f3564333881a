"""The rules load, are tested by promtool, page one cause once and have a runbook.

The lints of the field (names, annotations, PromQL types) are in test_rules_lint.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.promql import (
    CONTRACT_METRICS,
    KNOWN_METRICS,
    RULES,
    RUNBOOK,
    RUNBOOK_URL,
    TABLE_METRICS,
    github_anchor,
    metric_names,
    promtool,
)

ROOT = Path(__file__).resolve().parent.parent
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus").glob("*_test.yml"))

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
    # more of the upstream
    "WhatsAppShardUnowned",
    "WhatsAppGatewayNotConnected",
    "WhatsAppGatewayUnregistered",
    "WhatsAppApiDeprecated",
    # fleets
    "WhatsAppExporterShardingMismatch",
    "WhatsAppExporterShardsMissing",
    "WhatsAppExporterConfigReloadFailed",
    # the Cloud API
    "WhatsAppCloudAccountDown",
    "WhatsAppCloudAuthFailing",
    "WhatsAppCloudApiUsageHigh",
    "WhatsAppCloudNumberOnPremises",
    "WhatsAppCloudNumberNotConnected",
    "WhatsAppCloudNumberBlocked",
    "WhatsAppCloudNumberLimited",
    "WhatsAppCloudNumberQualityRed",
}


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, check=False, cwd=cwd)


def rule_tests_against(
    rules_text: str, tmp_path: Path, tests: list[Path] = RULE_TESTS
) -> subprocess.CompletedProcess[str]:
    """Run rule test files against another version of the rules file."""
    (tmp_path / RULES.name).write_text(rules_text)
    for path in tests:
        (tmp_path / path.name).write_text(path.read_text())
    return run_promtool("test", "rules", *(p.name for p in tests), cwd=tmp_path)


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.fixture(scope="module")
def alerts(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for rule in rules if "alert" in rule]


@pytest.fixture(scope="module")
def recorded(rules: list[dict[str, Any]]) -> set[str]:
    return {rule["record"] for rule in rules if "record" in rule}


@pytest.fixture(scope="module")
def rule_tests() -> dict[str, Any]:
    """The tests of every rule test file, as one list."""
    files = [yaml.safe_load(path.read_text()) for path in RULE_TESTS]
    return {"tests": [test for f in files for test in f["tests"]], "files": files}


@pytest.fixture(scope="module")
def runbook_anchors() -> dict[str, str]:
    """Level-2 headings of the runbook by their GitHub anchor."""
    headings = re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(h): h for h in headings}


def test_promtool_check_rules_accepts_the_rules_file() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    assert len(RULE_TESTS) >= 3
    result = run_promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


# Each edit takes away one behaviour the issues asked for; alerts_test.yml must notice.
BROKEN_RULES = {
    "an alert that can no longer fire": (
        "expr: job_target:whatsapp_exporter_auth_rejected:count > 0",
        "expr: job_target:whatsapp_exporter_auth_rejected:count > 5",
    ),
    "TargetDown paging for rejected credentials too": (
        "          unless on (job, target) job_target:whatsapp_exporter_auth_rejected:count\n",
        "",
    ),
    "auth rejections counted on network failures": (
        'increase(whatsapp_exporter_poll_errors_total{reason="auth"}[15m])',
        'increase(whatsapp_exporter_poll_errors_total{reason=~"auth|connect|timeout"}[15m])',
    ),
    "a data alert paging for a target that is down": (
        "max by (job, target, host, container_id) (abs(whatsapp_clock_skew_seconds)) > 60\n"
        "          unless on (job, target) (job_target:whatsapp_up:max == 0)",
        "max by (job, target, host, container_id) (abs(whatsapp_clock_skew_seconds)) > 60",
    ),
    "the build expiry forgotten with the withdrawn series": (
        "last_over_time(job_target:whatsapp_build_expiry_timestamp_seconds:min[1h])",
        "last_over_time(whatsapp_build_expiry_timestamp_seconds[1h])",
    ),
    "the expiry carried for an hour after the sidecar Pod is gone": (
        "            and on (job, target)\n              whatsapp_up\n",
        "            and on (job, target)\n              last_over_time(whatsapp_up[1h])\n",
    ),
    "one ExporterDown per WhatsApp target in the per-target mode": (
        'expr: up{job="whatsapp-support-exporter",target=""} == 0',
        'expr: up{job="whatsapp-support-exporter"} == 0',
    ),
    "a shard counted once per exporter": (
        "max by (job, target, host, container_id, shard) (whatsapp_shard_owned)",
        "whatsapp_shard_owned",
    ),
}


@pytest.mark.parametrize("old, new", BROKEN_RULES.values(), ids=BROKEN_RULES.keys())
def test_promtool_rule_unit_tests_notice_a_broken_rule(old: str, new: str, tmp_path: Path) -> None:
    """Guards the guard: the unit tests notice each of these regressions."""
    text = RULES.read_text()
    assert text.count(old) == 1, old
    alerts_test = [path for path in RULE_TESTS if path.name == "alerts_test.yml"]
    result = rule_tests_against(text.replace(old, new), tmp_path, alerts_test)
    assert result.returncode != 0, result.stdout


# The same for the Cloud API's rules; cloud_test.yml must notice.
BROKEN_CLOUD_RULES = {
    "an account alert that can no longer fire": (
        "expr: job_account:whatsapp_exporter_cloud_auth_rejected:count > 0",
        "expr: job_account:whatsapp_exporter_cloud_auth_rejected:count > 1",
    ),
    "AccountDown paging for a rejected token too": (
        "          unless on (job, account) job_account:whatsapp_exporter_cloud_auth_rejected:count\n",
        "",
    ),
    "token rejections counted on network failures": (
        'increase(whatsapp_exporter_cloud_poll_errors_total{reason="auth"}[1h])',
        'increase(whatsapp_exporter_cloud_poll_errors_total{reason=~"auth|connect"}[1h])',
    ),
    "an account down when one of its exporters fails": (
        "expr: max by (job, account) (whatsapp_cloud_up)",
        "expr: min by (job, account) (whatsapp_cloud_up)",
    ),
    "a number paging for an account that cannot be polled": (
        'whatsapp_cloud_phone_number_can_send_message{status="BLOCKED"}\n'
        "          ) == 1\n"
        "          unless on (job, account, phone_number_id)\n"
        '            (whatsapp_cloud_phone_number_status{status!="CONNECTED"} == 1)\n'
        "          unless on (job, account, phone_number_id)\n"
        '            (whatsapp_cloud_phone_number_platform{platform="ON_PREMISE"} == 1)\n'
        "          unless on (job, account) (job_account:whatsapp_cloud_up:max == 0)",
        'whatsapp_cloud_phone_number_can_send_message{status="BLOCKED"}\n'
        "          ) == 1\n"
        "          unless on (job, account, phone_number_id)\n"
        '            (whatsapp_cloud_phone_number_status{status!="CONNECTED"} == 1)\n'
        "          unless on (job, account, phone_number_id)\n"
        '            (whatsapp_cloud_phone_number_platform{platform="ON_PREMISE"} == 1)',
    ),
    "a banned number paging as blocked too": (
        'whatsapp_cloud_phone_number_can_send_message{status="BLOCKED"}\n'
        "          ) == 1\n"
        "          unless on (job, account, phone_number_id)\n"
        '            (whatsapp_cloud_phone_number_status{status!="CONNECTED"} == 1)\n',
        'whatsapp_cloud_phone_number_can_send_message{status="BLOCKED"}\n          ) == 1\n',
    ),
    "a deleted number paging as not connected": (
        'whatsapp_cloud_phone_number_status{status!~"CONNECTED|DELETED"}',
        'whatsapp_cloud_phone_number_status{status!="CONNECTED"}',
    ),
    "an unlisted status taken for connected": (
        'whatsapp_cloud_phone_number_status{status!~"CONNECTED|DELETED"}',
        'whatsapp_cloud_phone_number_status{status=~"BANNED|FLAGGED|RESTRICTED|DISCONNECTED"}',
    ),
}


@pytest.mark.parametrize("old, new", BROKEN_CLOUD_RULES.values(), ids=BROKEN_CLOUD_RULES.keys())
def test_cloud_rule_unit_tests_notice_a_broken_cloud_rule(
    old: str, new: str, tmp_path: Path
) -> None:
    text = RULES.read_text()
    assert text.count(old) == 1, old
    cloud_test = [path for path in RULE_TESTS if path.name == "cloud_test.yml"]
    result = rule_tests_against(text.replace(old, new), tmp_path, cloud_test)
    assert result.returncode != 0, result.stdout


def test_rule_tests_load_the_rules_file(rule_tests: dict[str, Any]) -> None:
    for path, test_file in zip(RULE_TESTS, rule_tests["files"], strict=True):
        assert [path.parent / f for f in test_file["rule_files"]] == [RULES], path.name


def test_every_issue_required_alert_exists(alerts: list[dict[str, Any]]) -> None:
    assert {a["alert"] for a in alerts} >= REQUIRED_ALERTS


def test_alert_names_are_unique_and_camelcase_with_the_whatsapp_prefix(
    alerts: list[dict[str, Any]],
) -> None:
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"WhatsApp(?:[A-Z][a-z0-9]*)+", name), name


def test_every_alert_has_for_severity_and_the_three_annotations(
    alerts: list[dict[str, Any]],
) -> None:
    for alert in alerts:
        name = alert["alert"]
        assert re.fullmatch(r"\d+[smh]", str(alert.get("for", ""))), f"{name}: no for:"
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}, name
        for annotation in ("summary", "description", "runbook_url"):
            assert alert["annotations"].get(annotation, "").strip(), f"{name}: no {annotation}"


def test_every_runbook_url_points_at_the_alerts_own_runbook_section(
    alerts: list[dict[str, Any]], runbook_anchors: dict[str, str]
) -> None:
    for alert in alerts:
        url = urlsplit(alert["annotations"]["runbook_url"])
        assert url._replace(fragment="").geturl() == RUNBOOK_URL, alert["alert"]
        assert url.fragment == github_anchor(alert["alert"]), alert["alert"]
        assert runbook_anchors.get(url.fragment) == alert["alert"], alert["alert"]


def test_every_runbook_section_says_what_it_means_what_to_check_and_what_to_do(
    alerts: list[dict[str, Any]],
) -> None:
    sections = re.split(r"^## ", RUNBOOK.read_text(), flags=re.MULTILINE)[1:]
    by_title = {s.splitlines()[0].strip(): s for s in sections}
    for alert in alerts:
        section = by_title[alert["alert"]]
        for part in ("**Meaning.**", "**Check.**", "**Act.**"):
            assert part in section, f"{alert['alert']}: {part} missing"


def test_runbook_has_no_section_for_an_alert_that_does_not_exist(
    alerts: list[dict[str, Any]], runbook_anchors: dict[str, str]
) -> None:
    assert set(runbook_anchors.values()) == {a["alert"] for a in alerts}


def test_runbook_links_within_the_page_resolve(runbook_anchors: dict[str, str]) -> None:
    for anchor in re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text()):
        assert anchor in runbook_anchors, anchor


def test_every_alert_is_made_to_fire_by_a_rule_test(
    alerts: list[dict[str, Any]], rule_tests: dict[str, Any]
) -> None:
    fired = {
        case["alertname"]
        for test in rule_tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    missing = {a["alert"] for a in alerts} - fired
    assert not missing, f"no rule test makes these fire: {sorted(missing)}"


def test_every_alert_is_shown_silent_by_a_rule_test(
    alerts: list[dict[str, Any]], rule_tests: dict[str, Any]
) -> None:
    silent = {
        case["alertname"]
        for test in rule_tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts") == []
    }
    missing = {a["alert"] for a in alerts} - silent
    assert not missing, f"no rule test shows these silent: {sorted(missing)}"


def test_rule_tests_name_only_existing_alerts(
    alerts: list[dict[str, Any]], rule_tests: dict[str, Any]
) -> None:
    tested = {
        case["alertname"]
        for test in rule_tests["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert tested <= {a["alert"] for a in alerts}


def test_rule_expressions_name_only_known_or_recorded_metrics(
    rules: list[dict[str, Any]], recorded: set[str]
) -> None:
    for rule in rules:
        name = rule.get("alert") or rule.get("record")
        names = metric_names(rule["expr"])
        assert names, name
        unknown = names - KNOWN_METRICS - PROMETHEUS_METRICS - recorded
        assert not unknown, f"{name}: unknown metrics {sorted(unknown)}"


def test_known_metrics_include_the_0_2_contract_names() -> None:
    assert {
        "whatsapp_gateway_status",
        "whatsapp_shards_configured",
        "whatsapp_api_status",
        "whatsapp_exporter_collector_success",
        "whatsapp_exporter_collector_errors_total",
        "whatsapp_target_info",
        "whatsapp_exporter_shard_ordinal",
        "whatsapp_exporter_total_shards",
        "whatsapp_exporter_config_last_reload_successful",
        "whatsapp_exporter_config_last_reload_success_timestamp_seconds",
    } <= KNOWN_METRICS


def test_the_contract_and_the_metric_table_agree_on_metric_types() -> None:
    disagree = {
        name: (CONTRACT_METRICS[name], kind)
        for name, kind in TABLE_METRICS.items()
        if name in CONTRACT_METRICS and kind != CONTRACT_METRICS[name]
    }
    assert disagree == {}


def test_every_recording_rule_is_used_by_an_alert_or_another_recording_rule(
    rules: list[dict[str, Any]], recorded: set[str]
) -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in rules))
    assert recorded <= used


def test_rule_test_input_series_name_only_known_metrics(rule_tests: dict[str, Any]) -> None:
    for test in rule_tests["tests"]:
        for series in test["input_series"]:
            name = series["series"].split("{", 1)[0]
            assert name in KNOWN_METRICS | PROMETHEUS_METRICS, name


def test_github_anchor_matches_githubs_slugs() -> None:
    assert github_anchor("WhatsAppTargetDown") == "whatsapptargetdown"
    assert github_anchor("Free space: low!") == "free-space-low"
