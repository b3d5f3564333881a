"""The central and sharded kits: the configuration file and Secret they mount, the shards their
replicas take, and the monitors that scrape every replica."""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

import pytest
import yaml

from tests.deploy_tools import EXPORTER_PORT, KUBERNETES
from tests.kits import (
    DEPLOYING,
    JOB_RELABELING,
    Resource,
    configured_files,
    env,
    env_field_ref,
    exporter_of,
    mounted_config,
    of_kind,
    one,
    pod_labels,
    secret_keys_created_by,
    selects,
)

# --- central and sharded: the configuration file --------------------------------------------------


@pytest.mark.parametrize("name", ["central", "sharded"])
def test_exporter_reads_its_configuration_file_from_the_config_map(
    built_kits: dict[str, list[Resource]], name: str
) -> None:
    config, _, _ = mounted_config(built_kits[name])
    assert set(config) <= {"auths", "targets", "target_files"}
    assert len(config["targets"]) >= 2
    for target in config["targets"]:
        assert set(target) <= {"name", "url", "auth", "tls_config", "labels"}
        assert re.fullmatch(r"https://\S+", target["url"])
        assert target.get("auth") in {*config["auths"], None}, "an unknown auth stops the exporter"
    for auth in config["auths"].values():
        assert set(auth) <= {"api_key_file", "username", "password_file"}, "no inline secrets"


@pytest.mark.parametrize("name", ["central", "sharded"])
def test_configured_secret_files_lie_in_the_mounted_secret(
    built_kits: dict[str, list[Resource]], name: str
) -> None:
    config, _, secret_mount = mounted_config(built_kits[name])
    files = configured_files(config)
    assert files
    for path in files:
        assert PurePosixPath(path).parent == PurePosixPath(secret_mount), path


@pytest.mark.parametrize("name", ["central", "sharded"])
def test_target_files_globs_match_file_sd_lists_in_the_config_map(
    built_kits: dict[str, list[Resource]], name: str
) -> None:
    config, files, _ = mounted_config(built_kits[name])
    for pattern in config["target_files"]:
        matched = [path for path in files if fnmatch.fnmatch(path, pattern)]
        assert matched, f"{pattern} matches no file of the ConfigMap"
        for path in matched:
            for group in yaml.safe_load(files[path]):
                assert set(group) <= {"targets", "labels"}
                assert all(re.fullmatch(r"([\w-]+=)?https://\S+", t) for t in group["targets"])
                assert group.get("labels", {}).get("auth") in {*config["auths"], None}


@pytest.mark.parametrize("name", ["central", "sharded"])
def test_the_documented_secret_command_creates_every_configured_file(
    built_kits: dict[str, list[Resource]], name: str
) -> None:
    config, _, _ = mounted_config(built_kits[name])
    needed = {PurePosixPath(p).name for p in configured_files(config)}
    for source in (KUBERNETES / name / "config.yml", DEPLOYING):
        text = source.read_text()
        commands = re.findall(
            r"kubectl (?:-n \S+ )?create secret generic whatsapp-support-exporter(?:[^\n]*\\\n)*[^\n]*",
            text.replace("#   ", "").replace("#     ", ""),
        )
        assert commands, f"{source.name}: no `kubectl create secret` line"
        for command in commands:
            assert secret_keys_created_by(command) == needed, f"{source.name}: {command}"


def test_service_monitor_selects_the_central_service_port(
    built_kits: dict[str, list[Resource]],
) -> None:
    resources = built_kits["central"]
    service, monitor = one(resources, "Service"), one(resources, "ServiceMonitor")
    deployment = one(resources, "Deployment")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert selects(service["spec"]["selector"], pod_labels(deployment))
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    # The Operator names the job after the Service; the alerts expect this job name.
    assert service["metadata"]["name"] == "whatsapp-support-exporter"
    assert deployment["spec"]["replicas"] == 1


# --- sharded --------------------------------------------------------------------------------------


def test_sharded_replicas_take_their_shard_from_the_pod_name(
    built_kits: dict[str, list[Resource]],
) -> None:
    statefulset = one(built_kits["sharded"], "StatefulSet")
    exporter = exporter_of(statefulset)
    assert statefulset["spec"]["replicas"] >= 2
    assert env(exporter)["WA_TOTAL_SHARDS"] == str(statefulset["spec"]["replicas"])
    assert env_field_ref(exporter, "WA_SHARD") == "metadata.name"


def test_sharded_statefulset_has_a_headless_service_selecting_its_pods(
    built_kits: dict[str, list[Resource]],
) -> None:
    statefulset, service = (
        one(built_kits["sharded"], "StatefulSet"),
        one(built_kits["sharded"], "Service"),
    )
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert selects(service["spec"]["selector"], pod_labels(statefulset))
    assert selects(statefulset["spec"]["selector"]["matchLabels"], pod_labels(statefulset))


def test_sharded_pod_monitor_scrapes_every_replica(built_kits: dict[str, list[Resource]]) -> None:
    statefulset, monitor = (
        one(built_kits["sharded"], "StatefulSet"),
        one(built_kits["sharded"], "PodMonitor"),
    )
    assert selects(monitor["spec"]["selector"]["matchLabels"], pod_labels(statefulset))
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in exporter_of(statefulset)["ports"]}
    assert JOB_RELABELING in endpoint["relabelings"]


def test_sharded_disruption_budget_lets_one_replica_go_at_a_time(
    built_kits: dict[str, list[Resource]],
) -> None:
    statefulset = one(built_kits["sharded"], "StatefulSet")
    budget = one(built_kits["sharded"], "PodDisruptionBudget")
    assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels(statefulset))
    assert budget["spec"]["maxUnavailable"] == 1


def test_per_target_example_discovers_every_replica_and_drops_the_pod_monitor(
    built_kits: dict[str, list[Resource]],
) -> None:
    resources = built_kits["examples/per-target"]
    assert not of_kind(resources, "PodMonitor"), "the targets would be scraped twice"
    statefulset, service = one(resources, "StatefulSet"), one(resources, "Service")
    scrapes = {r["metadata"]["name"]: r["spec"] for r in of_kind(resources, "ScrapeConfig")}
    per_target = scrapes["whatsapp-support-exporter"]
    exporters = scrapes["whatsapp-support-exporter-exporters"]
    namespace = statefulset["metadata"]["namespace"]
    name, replicas = statefulset["metadata"]["name"], statefulset["spec"]["replicas"]
    addresses = [
        f"{name}-{i}.{service['metadata']['name']}.{namespace}.svc:{EXPORTER_PORT}"
        for i in range(replicas)
    ]
    assert [sd["url"] for sd in per_target["httpSDConfigs"]] == [
        f"http://{a}/sd" for a in addresses
    ]
    assert per_target["metricsPath"] == exporters["metricsPath"] == "/metrics"
    # Each scrape is told apart by its target's name; the scraped `target` is kept as it is.
    assert per_target["honorLabels"] is True
    assert {
        "action": "replace",
        "sourceLabels": ["__param_target"],
        "targetLabel": "target",
    } in per_target["relabelings"]
    assert not [r for r in per_target["relabelings"] if r.get("targetLabel") == "instance"]
    assert JOB_RELABELING in per_target["relabelings"]


def test_per_target_example_still_scrapes_each_exporters_own_series_once(
    built_kits: dict[str, list[Resource]],
) -> None:
    """The reload and sharding alerts and the dashboard's exporter row need them; the targets'
    series are dropped there (the per-target scrapes have them), `instance` is the same."""
    scrapes = {
        r["metadata"]["name"]: r["spec"]
        for r in of_kind(built_kits["examples/per-target"], "ScrapeConfig")
    }
    per_target = scrapes["whatsapp-support-exporter"]
    exporters = scrapes["whatsapp-support-exporter-exporters"]
    (static,) = exporters["staticConfigs"]
    assert [f"http://{a}/sd" for a in static["targets"]] == [
        sd["url"] for sd in per_target["httpSDConfigs"]
    ]
    assert exporters["metricRelabelings"] == [
        {"action": "drop", "sourceLabels": ["target"], "regex": ".+"}
    ]
    assert JOB_RELABELING in exporters["relabelings"]
