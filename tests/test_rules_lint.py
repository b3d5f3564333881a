"""The rules pass the lints alerting rules are held to in the field, and each lint bites.

Every check takes one rule (as loaded from alerts.yml) and returns its problems; the rules file
must have none, and for every check a seeded bad alert shows that it reports exactly one.
"""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.promql import METRIC_TYPES, RULES, RUNBOOK, RUNBOOK_URL, github_anchor, promtool

Rule = dict[str, Any]
Check = Callable[[Rule], list[str]]

SEVERITIES = {"critical", "warning", "info"}
ALERT_NAME = re.compile(r"WhatsApp(?:[A-Z][a-z0-9]+)+")
MAX_NAME_LENGTH = 40
RECORD_NAME = re.compile(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+")  # level:metric:operations
DURATION = re.compile(r"(?:\d+[smhdwy])+")
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(h) for h in headings}


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


ANCHORS = runbook_anchors()
# Recorded series are gauges: they hold the result of a query, not a count that only grows.
TYPES = {**METRIC_TYPES, "up": "gauge"} | dict.fromkeys(recorded_names(), "gauge")


def selections(
    expr: promql_parser.Expr, function: str | None = None
) -> Iterator[tuple[str, str | None]]:
    """(metric name, function whose range argument it is, or None) for every selector."""
    if isinstance(expr, promql_parser.VectorSelector):
        yield selector_name(expr), None
    elif isinstance(expr, promql_parser.MatrixSelector):
        yield selector_name(expr.vector_selector), function
    elif isinstance(expr, promql_parser.Call):
        for arg in expr.args:
            if isinstance(arg, promql_parser.Expr):
                yield from selections(arg, expr.func.name)
    elif isinstance(expr, promql_parser.BinaryExpr):
        yield from selections(expr.lhs)
        yield from selections(expr.rhs)
    elif isinstance(expr, promql_parser.AggregateExpr):
        if isinstance(expr.param, promql_parser.Expr):
            yield from selections(expr.param)
        yield from selections(expr.expr)
    elif isinstance(
        expr, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
    ):
        yield from selections(expr.expr)


def selector_name(selector: promql_parser.VectorSelector) -> str:
    if selector.name:
        return selector.name
    for matcher in selector.matchers.matchers:
        if matcher.name == "__name__":
            return matcher.value
    return ""


def parsed(rule: Rule) -> promql_parser.Expr | None:
    try:
        return promql_parser.parse(rule["expr"])
    except Exception:  # the parser raises its own error types for a bad expression
        return None


# --- the checks -----------------------------------------------------------------------------------


def check_name(rule: Rule) -> list[str]:
    if "record" in rule:
        name = rule["record"]
        return [] if RECORD_NAME.fullmatch(name) else [f"{name}: not level:metric:operations"]
    name = rule["alert"]
    if not ALERT_NAME.fullmatch(name):
        return [f"{name}: not CamelCase with the WhatsApp prefix"]
    if len(name) > MAX_NAME_LENGTH:
        return [f"{name}: longer than {MAX_NAME_LENGTH} characters"]
    return []


def check_severity(rule: Rule) -> list[str]:
    if "alert" not in rule:
        return []
    severity = rule.get("labels", {}).get("severity")
    return [] if severity in SEVERITIES else [f"{rule['alert']}: severity {severity!r}"]


def check_summary(rule: Rule) -> list[str]:
    if "alert" not in rule:
        return []
    summary = str(rule.get("annotations", {}).get("summary", ""))
    if "{{" in summary:
        return [f"{rule['alert']}: templated summary"]
    if not re.fullmatch(r"[A-Z][^\n]*[a-z0-9)'\"]\.", summary):
        return [f"{rule['alert']}: summary is not one sentence ending with a period"]
    return []


def check_description(rule: Rule) -> list[str]:
    if "alert" not in rule:
        return []
    description = str(rule.get("annotations", {}).get("description", ""))
    return [] if "{{" in description else [f"{rule['alert']}: description has no template"]


def check_runbook_url(rule: Rule) -> list[str]:
    if "alert" not in rule:
        return []
    url = str(rule.get("annotations", {}).get("runbook_url", ""))
    base, _, anchor = url.partition("#")
    if base != RUNBOOK_URL or anchor not in ANCHORS:
        return [f"{rule['alert']}: runbook_url {url!r} is no heading of docs/runbook.md"]
    return []


def check_for(rule: Rule) -> list[str]:
    if "alert" not in rule:
        return []
    duration = str(rule.get("for", ""))
    if (
        not DURATION.fullmatch(duration)
        or promql_parser.parse_duration(duration).total_seconds() <= 0
    ):
        return [f"{rule['alert']}: no for:"]
    return []


def check_valid_promql(rule: Rule) -> list[str]:
    return [] if parsed(rule) is not None else [f"{rule_name(rule)}: invalid PromQL"]


def check_counters(rule: Rule) -> list[str]:
    """Counters only inside rate/increase, and rate/increase only over counters."""
    expr = parsed(rule)
    if expr is None:
        return []
    problems = []
    for name, function in selections(expr):
        kind = TYPES.get(name)
        if function in COUNTER_FUNCTIONS and kind != "counter":
            problems.append(f"{rule_name(rule)}: {function}() over {kind or 'unknown'} {name}")
        if function not in COUNTER_FUNCTIONS and kind == "counter":
            problems.append(f"{rule_name(rule)}: counter {name} outside rate()/increase()")
    return problems


def check_known_metrics(rule: Rule) -> list[str]:
    expr = parsed(rule)
    if expr is None:
        return []
    return [
        f"{rule_name(rule)}: unknown metric {name!r}"
        for name, _ in selections(expr)
        if name not in TYPES
    ]


CHECKS: dict[str, Check] = {
    "name": check_name,
    "severity": check_severity,
    "summary": check_summary,
    "description": check_description,
    "runbook_url": check_runbook_url,
    "for": check_for,
    "valid_promql": check_valid_promql,
    "counters": check_counters,
    "known_metrics": check_known_metrics,
}


def rule_name(rule: Rule) -> str:
    return str(rule.get("alert") or rule.get("record"))


def lint(rule: Rule) -> dict[str, list[str]]:
    """Problems of one rule by check (checks without problems left out)."""
    found = {name: check(rule) for name, check in CHECKS.items()}
    return {name: problems for name, problems in found.items() if problems}


# --- the rules file passes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_rule_passes_every_lint(rules: list[Rule]) -> None:
    problems = {rule_name(rule): lint(rule) for rule in rules}
    assert {name: found for name, found in problems.items() if found} == {}


def test_promtool_lint_all_with_lint_fatal_passes() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", "--lint=all", "--lint-fatal", str(RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- each lint bites once on a seeded bad alert ---------------------------------------------------

GOOD: Rule = {
    "alert": "WhatsAppTargetDown",
    "expr": "job_target:whatsapp_up:max == 0",
    "for": "5m",
    "labels": {"severity": "critical"},
    "annotations": {
        "summary": "A WhatsApp Business API client does not answer the exporter.",
        "description": "Every poll of {{ $labels.target }} has failed for 5 minutes.",
        "runbook_url": f"{RUNBOOK_URL}#whatsapptargetdown",
    },
}


def seeded(path: str, value: Any) -> Rule:
    """GOOD with one field (``annotations.summary``) replaced, or removed when value is None."""
    rule = copy.deepcopy(GOOD)
    *parents, key = path.split(".")
    node = rule
    for parent in parents:
        node = node[parent]
    if value is None:
        del node[key]
    else:
        node[key] = value
    return rule


BAD_ALERTS = {
    "lower-case name": ("name", seeded("alert", "whatsappTargetDown")),
    "other prefix": ("name", seeded("alert", "WaTargetDown")),
    "name too long": ("name", seeded("alert", "WhatsAppTargetDoesNotAnswerTheExporterAtAll")),
    "severity page": ("severity", seeded("labels.severity", "page")),
    "no severity": ("severity", seeded("labels", {})),
    "templated summary": (
        "summary",
        seeded("annotations.summary", "Target {{ $labels.target }} is down."),
    ),
    "summary without period": ("summary", seeded("annotations.summary", "A target is down")),
    "static description": ("description", seeded("annotations.description", "It is down.")),
    "runbook anchor missing": (
        "runbook_url",
        seeded("annotations.runbook_url", f"{RUNBOOK_URL}#whatsappnosuchalert"),
    ),
    "runbook elsewhere": (
        "runbook_url",
        seeded("annotations.runbook_url", "https://example.org/runbook#whatsapptargetdown"),
    ),
    "no for": ("for", seeded("for", None)),
    "rate over a gauge": (
        "counters",
        seeded("expr", "rate(whatsapp_free_space_bytes[5m]) < 0"),
    ),
    "bare counter": ("counters", seeded("expr", "whatsapp_exporter_poll_errors_total > 0")),
    "deriv over a counter": (
        "counters",
        seeded("expr", "deriv(whatsapp_exporter_polls_total[10m]) == 0"),
    ),
    "invalid PromQL": ("valid_promql", seeded("expr", "sum by (target (whatsapp_up) == 0")),
    "unknown metric": ("known_metrics", seeded("expr", "whatsapp_target_up == 0")),
}


def test_the_seed_alert_passes_every_lint() -> None:
    assert lint(GOOD) == {}


@pytest.mark.parametrize("check, bad", BAD_ALERTS.values(), ids=BAD_ALERTS.keys())
def test_each_lint_reports_its_seeded_bad_alert_once(check: str, bad: Rule) -> None:
    found = lint(bad)
    assert list(found) == [check], found
    assert len(found[check]) == 1, found


def test_a_bad_recording_rule_name_is_reported() -> None:
    assert lint({"record": "whatsapp_up_max", "expr": "max by (job, target) (whatsapp_up)"}) == {
        "name": ["whatsapp_up_max: not level:metric:operations"]
    }


def test_promtool_lint_fatal_rejects_a_duplicated_rule(tmp_path: Path) -> None:
    rule = {"record": "job_target:whatsapp_up:max", "expr": "max by (job, target) (whatsapp_up)"}
    path = tmp_path / "duplicated.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule, rule]}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", "--lint=all", "--lint-fatal", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3, result.stdout + result.stderr
