"""The Prometheus configuration examples: promtool accepts them, and the per-target setup works.

A real Prometheus runs the per-target setup's two jobs against a real exporter polling the
simulator: one scrape per target, the exporter's own series still there once, and no label
written twice.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, wait_until
from tests.deploy_tools import EXPORTER_PORT, KUBERNETES, PROMETHEUS, run, tool
from tests.test_prometheus_e2e import clean_env, exporter_argv, query, simulator_targets, start

SCRAPE_CONFIG = PROMETHEUS / "scrape-config.yml"
RULES = PROMETHEUS / "alerts.yml"
PER_TARGET_JOB = "whatsapp-support-exporter-per-target"
EXPORTERS_JOB = "whatsapp-support-exporter-per-target-exporters"
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


def as_plain(relabelings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Operator relabelings in the spelling of a plain scrape config (action replace implied)."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [
        {names.get(k, k): v for k, v in r.items() if not (k == "action" and v == "replace")}
        for r in relabelings
    ]


def test_per_target_jobs_match_the_operator_scrape_config_example() -> None:
    plain, exporters = job(PER_TARGET_JOB), job(EXPORTERS_JOB)
    operator = {
        d["metadata"]["name"]: d["spec"]
        for d in yaml.safe_load_all(
            (KUBERNETES / "examples" / "per-target" / "scrapeconfig.yaml").read_text()
        )
    }
    spec = operator["whatsapp-support-exporter"]
    assert [sd["url"] for sd in plain["http_sd_configs"]] == [
        sd["url"] for sd in spec["httpSDConfigs"]
    ]
    assert plain["metrics_path"] == spec["metricsPath"]
    assert plain["scrape_interval"] == spec["scrapeInterval"]
    assert plain["honor_labels"] is spec["honorLabels"] is True
    assert as_plain(spec["relabelings"]) == plain["relabel_configs"]
    spec = operator["whatsapp-support-exporter-exporters"]
    assert exporters["static_configs"] == spec["staticConfigs"]
    assert as_plain(spec["relabelings"]) == exporters["relabel_configs"]
    assert as_plain(spec["metricRelabelings"]) == exporters["metric_relabel_configs"]
    # Both jobs name each exporter by the same address.
    (static,) = exporters["static_configs"]
    assert [f"http://{a}/sd" for a in static["targets"]] == [
        sd["url"] for sd in plain["http_sd_configs"]
    ]


# --- a real Prometheus runs the per-target setup --------------------------------------------------

API_KEY = "per-target-api-key-0123456789"


def series(api: str, expr: str) -> list[dict[str, str]]:
    return [s["metric"] for s in query(api, expr)]


@pytest.fixture(scope="module")
def per_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(Prometheus' API URL, the exporter's address) of the two jobs against a real exporter
    of two labelled targets."""
    tmp = tmp_path_factory.mktemp("per-target")
    env = clean_env()
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with ExitStack() as processes:
        sim = start(
            processes,
            [
                *(sys.executable, "-m", "whatsapp_api_simulator", "--listen", "127.0.0.1:0"),
                *("--single", "2", "--api-key", API_KEY),
            ],
            env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        urls = simulator_targets(sim)
        config = tmp / "config.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "auths": {"sim": {"api_key": API_KEY}},
                    "targets": [
                        {"name": name, "url": url, "auth": "sim", "labels": {"env": "prod"}}
                        for name, url in zip(("eu-prod", "us-prod"), urls.values(), strict=True)
                    ],
                }
            )
        )
        port, prometheus_port = free_port(), free_port()
        start(processes, exporter_argv(port, "--config.file", str(config)), env, **quiet)
        address = f"127.0.0.1:{port}"
        jobs = [copy.deepcopy(job(PER_TARGET_JOB)), copy.deepcopy(job(EXPORTERS_JOB))]
        jobs[0]["http_sd_configs"] = [{"url": f"http://{address}/sd", "refresh_interval": "1s"}]
        jobs[1]["static_configs"] = [{"targets": [address]}]
        for scrape in jobs:
            scrape["scrape_interval"] = scrape["scrape_timeout"] = "1s"
        prometheus_config = tmp / "prometheus.yml"
        prometheus_config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
        start(
            processes,
            [
                tool("prometheus"),
                f"--config.file={prometheus_config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            env,
            **quiet,
        )
        api = f"http://127.0.0.1:{prometheus_port}/api/v1"
        wait_until(lambda: len(query(api, "whatsapp_up == 1")) == 2, 30, "both targets up")
        wait_until(lambda: query(api, "whatsapp_exporter_build_info"), 30, "the exporter's series")
        wait_until(lambda: len(query(api, "up == 1")) == 3, 30, "three scrapes up")
        yield api, address


def test_prometheus_scrapes_each_target_once_and_the_exporter_once(
    per_target: tuple[str, str],
) -> None:
    api, address = per_target
    ups = sorted((s["job"], s["instance"], s.get("target", "")) for s in series(api, "up"))
    assert ups == [(JOB, address, ""), (JOB, address, "eu-prod"), (JOB, address, "us-prod")]
    # The alert on the exporter sees its own scrape only: one page when it is down.
    assert [
        s.get("target") for s in series(api, 'up{job="whatsapp-support-exporter",target=""}')
    ] == [None]


def test_per_target_mode_keeps_the_exporters_own_series_once_under_the_same_instance(
    per_target: tuple[str, str],
) -> None:
    """The reload and sharding alerts need them; the dashboard's instance variable comes from
    whatsapp_exporter_build_info and its target variable from whatsapp_up of that instance."""
    api, address = per_target
    for name in (
        "whatsapp_exporter_build_info",
        "whatsapp_exporter_config_last_reload_successful",
        "whatsapp_exporter_total_shards",
    ):
        assert [(s["job"], s["instance"]) for s in series(api, name)] == [(JOB, address)], name
    ups = series(api, f'whatsapp_up{{job="whatsapp-support-exporter",instance="{address}"}}')
    assert sorted(s["target"] for s in ups) == ["eu-prod", "us-prod"]
    # Each target's series once: the exporters' job dropped its copy.
    assert len(series(api, "whatsapp_exporter_polls_total")) == 2


def test_per_target_mode_writes_no_label_twice(per_target: tuple[str, str]) -> None:
    api, _ = per_target
    everything = series(api, '{__name__=~"whatsapp_.+|up"}')
    assert everything
    doubled = {k for s in everything for k in s if k.startswith("exported_")}
    assert doubled == set()
    info = series(api, "whatsapp_target_info")
    assert sorted((s["target"], s["env"]) for s in info) == [
        ("eu-prod", "prod"),
        ("us-prod", "prod"),
    ]
    # The target's labels arrive on whatsapp_target_info only, not on every series.
    assert all("env" not in s for s in series(api, "whatsapp_up"))
