"""A real Prometheus scrapes three real exporters: the dashboard and the rules work on a fleet.

The exporters are what a user could run side by side in one Prometheus job:

- ``demo``: ``--demo``, polling its own simulated cluster and single instance;
- ``left`` and ``right``: two exporters polling one shared simulator, like the two sidecars of
  an HA pair of Webapps. They name their targets ``cluster`` and ``single`` too, so the same
  target names come from different clients (demo vs left) and from the same client twice
  (left and right). Both also poll the shared simulator's Graph API (the Cloud API's demo
  account, every state of every field), as the demo polls its own.

Every dashboard query (variables as "All" selects them) must return data, series of different
exporters must stay apart, a container exported twice must count once, the unlimited free space
must read "unlimited", and every rule of deploy/prometheus/alerts.yml must load and evaluate with
health "ok".
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.conftest import free_port, wait_until
from tests.promql import mapping_text

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "whatsapp-support-exporter.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "whatsapp-support-exporter"
# Grafana's built-in variables as a 1 s scrape interval makes them.
BUILTINS = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m", "__range_s": "300"}
UNLIMITED_FREE_SPACE = 9223372036853727000.0
SHARDS = 4  # of the shared simulator's multiconnect cluster, as of the demo's
PASSWORD = "e2e-password-0123456789"
CLOUD_INTERVAL = 10  # seconds, the shortest the exporter takes

SHARD_COLUMNS = [
    ("Shards per cluster", ref, name)
    for ref, name in (("A", "configured"), ("B", "owned"), ("C", "connected"), ("D", "missing"))
]
T = TypeVar("T")
Series = dict[str, Any]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def query(api: str, expr: str) -> list[Series]:
    body = get_json(f"{api}/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", body
    result: list[Series] = body["data"]["result"]
    return result


def value(series: Series) -> float:
    return float(series["value"][1])


def clean_env() -> dict[str, str]:
    """The environment without any WA_* setting of the developer's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WA_")}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian package prometheus)")
    return path


@dataclass(frozen=True)
class Stack:
    """Prometheus' API URL and the instance (host:port) of each exporter."""

    api: str
    demo: str
    left: str
    right: str

    @property
    def instances(self) -> set[str]:
        return {self.demo, self.left, self.right}


def start(
    stack: ExitStack, argv: list[str], env: dict[str, str], **kw: Any
) -> subprocess.Popen[str]:
    process = subprocess.Popen(argv, env=env, text=True, cwd=ROOT, **kw)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)
    return process


def simulator_targets(process: subprocess.Popen[str]) -> dict[str, str]:
    """The ``name=url,...`` line the simulator prints once it listens."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 15)
    assert ready, "the simulator printed no targets within 15s"
    line = process.stdout.readline().strip()
    return dict(item.split("=", 1) for item in line.split(","))


def simulator_cloud_settings(process: subprocess.Popen[str]) -> dict[str, str]:
    """The three ``WA_CLOUD_*=...`` lines that follow, for its simulated Graph API."""
    assert process.stdout is not None
    lines = [process.stdout.readline().strip() for _ in range(3)]
    settings = dict(line.split("=", 1) for line in lines)
    assert set(settings) == {"WA_CLOUD_GRAPH_URL", "WA_CLOUD_WABA_IDS", "WA_CLOUD_TOKEN"}
    return settings


def exporter_argv(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "whatsapp_support_exporter",
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--poll.interval",
        "1",
        *extra,
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus, _ = tool("prometheus"), tool("promtool")
    tmp = tmp_path_factory.mktemp("prometheus")
    env = clean_env()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with ExitStack() as processes:
        sim = start(
            processes,
            [
                sys.executable,
                "-m",
                "whatsapp_api_simulator",
                "--listen",
                "127.0.0.1:0",
                "--single",
                "1",
                "--multiconnect",
                "1",
                "--coreapps",
                str(SHARDS),
                "--shards",
                str(SHARDS),
                "--password",
                PASSWORD,
                "--graph-demo",
                "--graph-rate-limit",
                "100000",  # three exporters polling every few seconds stay below it
            ],
            env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        urls = simulator_targets(sim)
        shared = {
            **env,
            **simulator_cloud_settings(sim),
            "WA_CLOUD_INTERVAL": f"{CLOUD_INTERVAL}s",
            "WA_TARGETS": f"cluster={urls['mc-0']},single={urls['single-0']}",
            "WA_USERNAME": "admin",
            "WA_PASSWORD": PASSWORD,
        }
        ports = {name: free_port() for name in ("demo", "left", "right", "prometheus")}
        start(processes, exporter_argv(ports["demo"], "--demo"), env, **quiet)
        start(processes, exporter_argv(ports["left"]), shared, **quiet)
        start(processes, exporter_argv(ports["right"]), shared, **quiet)
        instances = [f"127.0.0.1:{ports[name]}" for name in ("demo", "left", "right")]
        config = tmp / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {"job_name": JOB, "static_configs": [{"targets": instances}]}
                    ],
                }
            )
        )
        start(
            processes,
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
            env,
            **quiet,
        )
        api = f"http://127.0.0.1:{ports['prometheus']}/api/v1"
        wait_until(lambda: len(query(api, "whatsapp_up == 1")) == 6, 30, "six targets up")
        wait_until(lambda: len(query(api, "whatsapp_cloud_up == 1")) == 3, 30, "three accounts up")
        # enough scrapes that rate(), deriv() and predict_linear() have samples to work with
        wait_until(
            lambda: query(api, "min(count_over_time(whatsapp_up[1m])) >= 5"), 30, "five scrapes"
        )
        yield Stack(api, *instances)


def fill_variables(expr: str) -> str:
    """Dashboard variables as "All" selects them, Grafana's built-ins as a 1 s scrape makes them."""

    def fill(name: str) -> str:
        return BUILTINS.get(name, ".*")

    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}", lambda m: fill(m.group(1)), expr)
    return re.sub(r"\$(\w+)", lambda m: fill(m.group(1)), expr)


def load_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in load_dashboard()["panels"] if p["type"] != "row"}


def dashboard_queries() -> list[tuple[str, str]]:
    return [
        (f"{title} [{t['refId']}]", t["expr"])
        for title, panel in dashboard_panels().items()
        for t in panel["targets"]
    ]


def panel_query(api: str, title: str, ref: str = "A") -> list[Series]:
    (expr,) = [t["expr"] for t in dashboard_panels()[title]["targets"] if t["refId"] == ref]
    return query(api, fill_variables(expr))


def returns_data(api: str, expr: str) -> list[Series]:
    """A dashboard query's result once it has one (a collector's first answer may lag a poll)."""
    return wait_until(lambda: query(api, fill_variables(expr)), 10, f"data for {expr}")


def scrape(url: str, accept: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as response:
        body: bytes = response.read()
    return body


# ---------------------------------------------------------------- the exposition


def test_promtool_accepts_the_live_exposition(stack: Stack) -> None:
    body = scrape(f"http://{stack.demo}/metrics", "text/plain")
    assert b"whatsapp_shard_owned{" in body
    checked = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_live_openmetrics_parses_with_the_reference_parser(stack: Stack) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    body = scrape(f"http://{stack.demo}/metrics", "application/openmetrics-text; version=1.0.0")
    families = text_string_to_metric_families(body.decode())  # type: ignore[no-untyped-call]
    names = {family.name for family in families}
    assert {"whatsapp_shard_owned", "whatsapp_exporter_polls", "process_cpu_seconds"} <= names


# ---------------------------------------------------------------- the dashboard


def test_dashboard_has_queries_to_check() -> None:
    assert len(dashboard_queries()) >= 30


@pytest.mark.parametrize(
    ("panel", "expr"), dashboard_queries(), ids=[p for p, _ in dashboard_queries()]
)
def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    stack: Stack, panel: str, expr: str
) -> None:
    assert returns_data(stack.api, expr), panel


@pytest.mark.parametrize(
    ("panel", "expr"), dashboard_queries(), ids=[p for p, _ in dashboard_queries()]
)
def test_series_of_different_exporters_stay_apart(stack: Stack, panel: str, expr: str) -> None:
    """A query keeping ``instance`` shows each exporter's own series, never a merged one."""
    result = returns_data(stack.api, expr)
    if not all("instance" in s["metric"] for s in result):
        return  # a fleet total or a per-shard count: checked by the tests below

    def from_every_exporter() -> list[Series]:
        result = query(stack.api, fill_variables(expr))
        return result if {s["metric"]["instance"] for s in result} == stack.instances else []

    result = wait_until(from_every_exporter, 10, f"{panel}: a series of every exporter")
    keys = [tuple(sorted(s["metric"].items())) for s in result]
    assert len(keys) == len(set(keys)), f"{panel}: two series with the same labels"


def test_same_target_names_from_different_clients_stay_apart(stack: Stack) -> None:
    rows = [s for s in panel_query(stack.api, "Free space now") if "host" in s["metric"]]
    hosts = {
        instance: {s["metric"]["host"] for s in rows if s["metric"]["instance"] == instance}
        for instance in stack.instances
    }
    assert hosts[stack.left] == hosts[stack.right]  # the same cluster, polled twice
    assert hosts[stack.demo].isdisjoint(hosts[stack.left])  # another cluster, also "cluster"


def test_a_container_exported_by_two_exporters_counts_once(stack: Stack) -> None:
    raw = query(stack.api, "whatsapp_socket_connected")
    containers = {
        (s["metric"]["host"], s["metric"]["container_id"])
        if s["metric"].get("host")
        else (s["metric"]["instance"], s["metric"]["target"])
        for s in raw
    }
    (total,) = panel_query(stack.api, "Sockets connected", "B")
    assert value(total) == len(containers) < len(raw)
    (targets,) = panel_query(stack.api, "Targets up", "B")
    assert value(targets) == 6  # targets as configured: three exporters, two each


def test_unlimited_free_space_reaches_grafana_as_about_2_to_the_63_and_reads_unlimited(
    stack: Stack,
) -> None:
    media = query(stack.api, 'whatsapp_free_space_bytes{directory="media_incoming"}')
    assert media and {value(s) for s in media} == {UNLIMITED_FREE_SPACE}
    panels = dashboard_panels()
    for title in ("Free space now", "Least free space"):
        mappings = panels[title]["fieldConfig"]["defaults"]["mappings"]
        texts = {mapping_text(m, value(media[0])) for m in mappings} - {None}
        assert texts == {"unlimited"}, title
    data = panel_query(stack.api, "Free space now")
    real = [s for s in data if s["metric"]["directory"] == "data"]
    assert real and all(
        mapping_text(m, value(s)) is None
        for s in real
        for m in panels["Free space now"]["fieldConfig"]["defaults"]["mappings"]
    )


@pytest.mark.parametrize(
    "title",
    ["Estimated time until full", "Free space in 24 h (forecast)", "Free space per directory"],
)
def test_unlimited_directories_are_kept_out_of_forecasts_and_graphs(
    stack: Stack, title: str
) -> None:
    result = returns_data(stack.api, dashboard_panels()[title]["targets"][0]["expr"])
    directories = {s["metric"]["directory"] for s in result}
    assert directories <= {"data", "logs"}, title


def test_cluster_row_shows_every_configured_shard_owned_and_connected(stack: Stack) -> None:
    def columns() -> dict[str, dict[str, float]]:
        found = {
            name: {s["metric"]["instance"]: value(s) for s in panel_query(stack.api, title, ref)}
            for title, ref, name in SHARD_COLUMNS
        }
        complete = all(set(column) == stack.instances for column in found.values())
        return found if complete else {}

    found = wait_until(columns, 10, "every column of every exporter")
    everyone = dict.fromkeys(stack.instances, float(SHARDS))
    assert found["configured"] == found["owned"] == found["connected"] == everyone
    assert found["missing"] == dict.fromkeys(stack.instances, 0.0)


def test_role_and_gateway_timelines_name_a_state_for_every_container(stack: Stack) -> None:
    panels = dashboard_panels()
    for title in ("Role per container", "Gateway status per container"):
        (mapping,) = panels[title]["fieldConfig"]["defaults"]["mappings"]
        rows = panel_query(stack.api, title)
        shown = {mapping_text(mapping, value(s)) for s in rows}
        assert None not in shown and "undocumented" not in shown, title
    roles = panel_query(stack.api, "Role per container")
    primaries = [s for s in roles if value(s) == 1]
    assert {s["metric"]["instance"] for s in primaries} == stack.instances
    assert len(primaries) == 3  # one primary master per cluster and exporter


def test_fleet_row_counts_each_exporters_targets_and_each_target_name_once_per_shard(
    stack: Stack,
) -> None:
    per_exporter = panel_query(stack.api, "Exporter replicas", "D")
    assert {s["metric"]["instance"]: value(s) for s in per_exporter} == dict.fromkeys(
        stack.instances, 2.0
    )
    (shard,) = panel_query(stack.api, "Targets per shard")
    assert (shard["metric"]["shard"], value(shard)) == ("0", 2.0)  # "cluster" and "single"
    reloads = panel_query(stack.api, "Config reload status")
    assert {s["metric"]["instance"]: value(s) for s in reloads} == dict.fromkeys(
        stack.instances, 1.0
    )


def test_template_variables_list_the_job_its_exporters_and_their_targets(stack: Stack) -> None:
    expected = {
        "job": {JOB},
        "instance": stack.instances,
        "target": {"cluster", "single"},
        "account": {"demo"},  # the demo's account, and the shared simulator's of that name
    }
    for variable in load_dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"]["query"])
        assert match, variable["name"]
        selector, label = fill_variables(match.group(1)), match.group(2)
        values = {s["metric"].get(label) for s in query(stack.api, selector)} - {None}
        assert values == expected[variable["name"]], variable["name"]


# ---------------------------------------------------------------- the Cloud API row


def numbers_on(stack: Stack, metric: str, label: str, value_: str) -> set[str]:
    """Phone number ids whose state set says ``label=value_`` (from any exporter)."""
    return {
        s["metric"]["phone_number_id"]
        for s in query(stack.api, f'{metric}{{{label}="{value_}"}} == 1')
    }


def test_a_cloud_number_reported_by_two_exporters_counts_once(stack: Stack) -> None:
    raw = query(stack.api, "whatsapp_cloud_phone_number_platform == 1")
    numbers = {s["metric"]["phone_number_id"] for s in raw}
    for title in ("Numbers by platform (migration)", "Numbers by quality rating"):
        counted = sum(value(s) for s in panel_query(stack.api, title))
        assert counted == len(numbers) < len(raw), title


def test_the_migration_panel_counts_the_numbers_still_on_premises(stack: Stack) -> None:
    rows = {
        s["metric"]["platform"]: value(s)
        for s in panel_query(stack.api, "Numbers by platform (migration)")
    }
    on_premise = numbers_on(stack, "whatsapp_cloud_phone_number_platform", "platform", "ON_PREMISE")
    assert rows["ON_PREMISE"] == len(on_premise) > 0
    assert rows["CLOUD_API"] > 0


def test_an_unlimited_messaging_limit_is_counted_as_unlimited(stack: Stack) -> None:
    limits = {s["metric"]["limit"] for s in panel_query(stack.api, "Numbers by messaging limit")}
    assert "unlimited" in limits and "+Inf" not in limits
    assert limits - {"unlimited"} <= {"50", "250", "1000", "2000", "10000", "100000"}


def test_every_row_of_the_phone_numbers_table_merges_its_columns(stack: Stack) -> None:
    """The info series and every state column share the labels Grafana's merge joins on."""

    def keys(ref: str) -> set[tuple[str, ...]]:
        return {
            tuple(s["metric"][k] for k in ("job", "instance", "account", "phone_number_id"))
            for s in panel_query(stack.api, "Phone numbers", ref)
        }

    info = keys("A")
    assert len(info) > 3
    for ref in "BCDE":
        assert keys(ref) == info, ref
    assert keys("F") <= info  # UNTIERED numbers have no limit


def test_usage_per_account_is_a_ratio(stack: Stack) -> None:
    usage = panel_query(stack.api, "Graph API usage per account")
    assert {s["metric"]["instance"] for s in usage} == stack.instances
    assert all(0 <= value(s) <= 1 for s in usage)


def test_cloud_number_alerts_match_the_exporters_labels(stack: Stack) -> None:
    """Real series raise the number alerts: the rules select labels the exporter exports."""
    on_premise = numbers_on(stack, "whatsapp_cloud_phone_number_platform", "platform", "ON_PREMISE")

    def pending() -> dict[str, set[str]]:
        alerts = get_json(f"{stack.api}/alerts")["data"]["alerts"]
        found: dict[str, set[str]] = {}
        for alert in alerts:
            labels = alert["labels"]
            if "phone_number_id" in labels:
                found.setdefault(labels["alertname"], set()).add(labels["phone_number_id"])
        return found if "WhatsAppCloudNumberNotConnected" in found else {}

    alerts = wait_until(pending, 20, "the Cloud API number alerts evaluated")
    deleted = numbers_on(stack, "whatsapp_cloud_phone_number_status", "status", "DELETED")
    assert on_premise & deleted  # the demo's deleted number is still on ON_PREMISE: no page
    assert alerts["WhatsAppCloudNumberOnPremises"] == on_premise - deleted
    assert alerts["WhatsAppCloudNumberNotConnected"].isdisjoint(on_premise)
    banned = numbers_on(stack, "whatsapp_cloud_phone_number_status", "status", "BANNED")
    assert banned - on_premise <= alerts["WhatsAppCloudNumberNotConnected"]


# ---------------------------------------------------------------- the rules


def rule_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule.get("alert") or rule["record"] for group in groups for rule in group["rules"]]


def test_every_rule_of_the_alerts_file_loads_and_evaluates_healthy(stack: Stack) -> None:
    never = "0001-01-01T00:00:00Z"

    def evaluated() -> list[dict[str, Any]]:
        groups = get_json(f"{stack.api}/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = rules and all(rule.get("lastEvaluation", never) != never for rule in rules)
        return rules if done else []

    rules = wait_until(evaluated, 20, "every rule evaluated")
    assert sorted(rule["name"] for rule in rules) == sorted(rule_names())
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
    assert not unhealthy
