"""The Prometheus configuration examples: promtool accepts them, and the per-target job works.

A real Prometheus runs the per-target job against a stand-in exporter serving /sd and
/metrics?target=, to show that discovery and relabelling give one scrape per target.
"""

from __future__ import annotations

import copy
import http.server
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port
from tests.deploy_tools import EXPORTER_PORT, KUBERNETES, PROMETHEUS, run, tool

SCRAPE_CONFIG = PROMETHEUS / "scrape-config.yml"
RULES = PROMETHEUS / "alerts.yml"
PER_TARGET_JOB = "whatsapp-support-exporter-per-target"
JOB = "whatsapp-support-exporter"

Job = dict[str, Any]


def jobs() -> list[Job]:
    found: list[Job] = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]
    return found


def job(name: str) -> Job:
    (found,) = [j for j in jobs() if j["job_name"] == name]
    return found


def promtool_check(config: dict[str, Any], directory: Path) -> subprocess.CompletedProcess[str]:
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return run(tool("promtool"), "check", "config", str(path))


def promtool_has_kubernetes_discovery(directory: Path) -> bool:
    """Debian's promtool is built without Kubernetes discovery (its client libraries)."""
    probe = {"scrape_configs": [{"job_name": "probe", "kubernetes_sd_configs": [{"role": "pod"}]}]}
    result = promtool_check(probe, directory)
    return "kubernetes_sd_configs not found" not in result.stdout + result.stderr


# --- promtool -------------------------------------------------------------------------------------


def test_example_prometheus_config_passes_promtool_check_config() -> None:
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_loads_the_alert_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [PROMETHEUS / f for f in config["rule_files"]] == [RULES]


def test_scrape_config_examples_pass_promtool_check_config(tmp_path: Path) -> None:
    scrape_configs = copy.deepcopy(jobs())
    if not promtool_has_kubernetes_discovery(tmp_path):
        # Everything but the discovery block is still checked, relabelling rules included.
        for scrape in scrape_configs:
            if scrape.pop("kubernetes_sd_configs", None) is not None:
                scrape["static_configs"] = [{"targets": [f"pod.example:{EXPORTER_PORT}"]}]
    result = promtool_check({"scrape_configs": scrape_configs}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config_rejects_a_broken_relabelling(tmp_path: Path) -> None:
    broken = copy.deepcopy(job(PER_TARGET_JOB))
    broken["relabel_configs"][0]["action"] = "replaze"
    result = promtool_check({"scrape_configs": [broken]}, tmp_path)
    assert result.returncode != 0


# --- what the jobs do -----------------------------------------------------------------------------


def test_scrape_config_covers_static_kubernetes_and_per_target_discovery() -> None:
    assert {next(k for k in j if k.endswith("_configs")) for j in jobs()} >= {
        "static_configs",
        "kubernetes_sd_configs",
        "http_sd_configs",
    }
    kubernetes = next(j for j in jobs() if "kubernetes_sd_configs" in j)
    assert kubernetes["kubernetes_sd_configs"] == [{"role": "pod"}]
    assert {
        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
        "regex": "wa-metrics",
        "action": "keep",
    } in kubernetes["relabel_configs"]


def test_every_job_ends_up_as_the_job_the_alerts_select() -> None:
    names = [j["job_name"] for j in jobs()]
    assert len(names) == len(set(names))
    for scrape in jobs():
        relabeled = [
            r.get("replacement")
            for r in scrape.get("relabel_configs", [])
            if r.get("target_label") == "job"
        ]
        assert (relabeled or [scrape["job_name"]])[-1] == JOB


def test_per_target_job_matches_the_operator_scrape_config_example() -> None:
    plain = job(PER_TARGET_JOB)
    operator = yaml.safe_load(
        (KUBERNETES / "examples" / "per-target" / "scrapeconfig.yaml").read_text()
    )
    spec = operator["spec"]
    assert [sd["url"] for sd in plain["http_sd_configs"]] == [
        sd["url"] for sd in spec["httpSDConfigs"]
    ]
    assert plain["metrics_path"] == spec["metricsPath"]
    assert plain["scrape_interval"] == spec["scrapeInterval"]
    as_plain = [
        {
            {"sourceLabels": "source_labels", "targetLabel": "target_label"}.get(k, k): v
            for k, v in r.items()
            if k != "action"
        }
        for r in spec["relabelings"]
    ]
    assert as_plain == plain["relabel_configs"]


# --- a real Prometheus runs the per-target job ----------------------------------------------------


class FakeExporter(http.server.BaseHTTPRequestHandler):
    """/sd lists two targets at this server; /metrics?target= serves one target's series."""

    targets = ("eu-prod", "us-prod")
    scraped: set[str] = set()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        host = self.headers["Host"]  # as Prometheus reached this server
        if url.path == "/sd":
            body = json.dumps(
                [{"targets": [host], "labels": {"__param_target": t}} for t in self.targets]
            )
            content_type = "application/json"
        elif url.path == "/metrics":
            (target,) = urllib.parse.parse_qs(url.query)["target"]
            FakeExporter.scraped.add(target)
            body = f'whatsapp_up{{target="{target}"}} 1\n'
            content_type = "text/plain; version=0.0.4"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_exporter() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeExporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    FakeExporter.scraped = set()


def active_targets(api: str) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{api}/api/v1/targets?state=active", timeout=2) as response:
            found: list[dict[str, Any]] = json.load(response)["data"]["activeTargets"]
            return found
    except OSError:
        return []


def test_prometheus_scrapes_each_discovered_target_under_its_own_instance(
    fake_exporter: str, tmp_path: Path
) -> None:
    scrape = copy.deepcopy(job(PER_TARGET_JOB))
    scrape["scrape_interval"] = "1s"
    scrape["scrape_timeout"] = "1s"
    scrape["http_sd_configs"] = [{"url": f"http://{fake_exporter}/sd", "refresh_interval": "1s"}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": [scrape]}))
    port = free_port()
    prometheus = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            targets = active_targets(api)
            if len(targets) == 2 and all(t["health"] == "up" for t in targets):
                break
            time.sleep(0.2)
        labels = sorted((t["labels"]["instance"], t["labels"]["job"]) for t in targets)
        assert labels == [("eu-prod", JOB), ("us-prod", JOB)], targets
        assert {t["scrapeUrl"] for t in targets} == {
            f"http://{fake_exporter}/metrics?target=eu-prod",
            f"http://{fake_exporter}/metrics?target=us-prod",
        }
        assert FakeExporter.scraped == {"eu-prod", "us-prod"}
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=10)
