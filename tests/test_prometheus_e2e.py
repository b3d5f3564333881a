"""A real Prometheus scrapes the real exporter polling the simulator: the operations kit works.

Every dashboard query (variables filled) must return data, and every alerting rule must load
and evaluate with health "ok". This is what a new user gets after importing our files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
DASHBOARD = ROOT / "grafana" / "whatsapp-support-exporter.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
# Grafana's built-in variables, as a 1 s scrape interval would make them
BUILTINS = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m", "__range_s": "300"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_until(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {within}s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The exporter in demo mode and a Prometheus scraping it every second.

    Yields the exporter's base URL and Prometheus' API URL.
    """
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is not installed (Debian package prometheus)")
            pytest.skip(f"{tool} is not installed (Debian package prometheus)")
    tmp = tmp_path_factory.mktemp("prometheus")
    exporter_port, prometheus_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "--demo",
            "--web.listen-address",
            f"127.0.0.1:{exporter_port}",
            "--poll.interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = tmp / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: whatsapp-support
    static_configs: [{{targets: ["127.0.0.1:{exporter_port}"]}}]
"""
    )
    server = subprocess.Popen(
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{prometheus_port}/api/v1"
    try:
        wait_until(lambda: query(api, "whatsapp_up")["result"], 30, "first scrape")
        # enough scrapes that rate(), deriv() and friends have samples to work with
        wait_until(
            lambda: query(api, "min(count_over_time(whatsapp_up[1m])) >= 5")["result"],
            30,
            "five scrapes",
        )
        yield f"http://127.0.0.1:{exporter_port}", api
    finally:
        for process in (server, exporter):
            process.terminate()
        for process in (server, exporter):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def prometheus(stack: tuple[str, str]) -> str:
    return stack[1]


def scrape(url: str, accept: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as response:
        body: bytes = response.read()
    return body


def test_promtool_accepts_the_live_exposition(stack: tuple[str, str]) -> None:
    body = scrape(f"{stack[0]}/metrics", "text/plain")
    assert b"whatsapp_shard_owned{" in body
    checked = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "metrics"],
        input=body,
        capture_output=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_live_openmetrics_parses_with_the_reference_parser(stack: tuple[str, str]) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    body = scrape(f"{stack[0]}/metrics", "application/openmetrics-text; version=1.0.0")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"whatsapp_shard_owned", "whatsapp_exporter_polls", "process_cpu_seconds"} <= names


def query(api: str, expr: str) -> Any:
    url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
    body = get_json(url)
    assert body["status"] == "success", body
    return body["data"]


def fill_variables(expr: str) -> str:
    """Dashboard variables as "All" selects them; Grafana's built-ins as a 1 s scrape makes them."""

    def value(name: str) -> str:
        return BUILTINS.get(name, ".*")

    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}", lambda m: value(m.group(1)), expr)
    return re.sub(r"\$(\w+)", lambda m: value(m.group(1)), expr)


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append(
                        (f"{panel.get('title')} [{target.get('refId', '')}]", target["expr"])
                    )
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return found


def test_dashboard_has_queries_to_check() -> None:
    assert len(dashboard_queries()) >= 10


@pytest.mark.parametrize(
    ("panel", "expr"), dashboard_queries(), ids=[p for p, _ in dashboard_queries()]
)
def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    prometheus: str, panel: str, expr: str
) -> None:
    result = query(prometheus, fill_variables(expr))["result"]
    assert result, f"{panel}: {expr} returned no data"


def test_template_variables_list_the_demo_targets_and_hosts(prometheus: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") != "query":
            continue
        definition = variable.get("definition") or variable["query"]
        if isinstance(definition, dict):
            definition = definition["query"]
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", definition.strip())
        assert match, definition
        selector, label = fill_variables(match.group(1)), match.group(2)
        result = query(prometheus, selector)["result"]
        values = {series["metric"].get(label) for series in result} - {None}
        assert values, f"variable {variable['name']} would be empty"
        if label == "target":
            assert values == {"cluster", "single"}


def test_every_alerting_rule_loads_and_evaluates_healthy(prometheus: str) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = get_json(f"{prometheus}/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        never = "0001-01-01T00:00:00Z"
        done = rules and all(rule.get("lastEvaluation", never) != never for rule in rules)
        return rules if done else []

    rules = wait_until(evaluated, 20, "every rule evaluated")
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
    assert not unhealthy
    assert sum(rule["type"] == "alerting" for rule in rules) >= 15
