"""Overlays a user writes on top of the kits (a name prefix, a remote base with their own
configuration) keep the job the alerts select, and every Operator resource says how it is found."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.deploy_tools import KUBERNETES
from tests.kits import (
    DEPLOYING,
    OPERATOR_KINDS,
    RULES,
    Resource,
    configured_files,
    kustomize_build,
    mounted_config,
    of_kind,
    one,
    pod_spec,
    selects,
    validate_kubernetes,
)

# --- overlays a user writes -----------------------------------------------------------------------

REMOTE_BASE = (
    "https://github.com/whatsapp-support-exporter/whatsapp-support-exporter//deploy/kubernetes/"
)


def alert_job() -> str:
    """The job WhatsAppExporterDown selects."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    (expr,) = [
        r["expr"] for g in groups for r in g["rules"] if r.get("alert") == "WhatsAppExporterDown"
    ]
    (job,) = re.findall(r'job="([^"]+)"', expr)
    return str(job)


def operator_job(resource: Resource, resources: list[Resource]) -> set[str]:
    """The `job` the Prometheus Operator gives a monitor's scrapes: its default (the Service's
    name for a ServiceMonitor, namespace/name otherwise), then the monitor's own relabelings."""
    spec = resource["spec"]
    namespace = resource["metadata"].get("namespace", "default")
    if resource["kind"] == "ServiceMonitor":
        services = [
            s
            for s in of_kind(resources, "Service")
            if selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        default = {s["metadata"]["name"] for s in services}
        endpoints = spec["endpoints"]
    elif resource["kind"] == "PodMonitor":
        default = {f"{namespace}/{resource['metadata']['name']}"}
        endpoints = spec["podMetricsEndpoints"]
    else:
        default = {f"scrapeConfig/{namespace}/{resource['metadata']['name']}"}
        endpoints = [spec]
    jobs = set()
    for endpoint in endpoints:
        relabeled = [
            r["replacement"]
            for r in endpoint.get("relabelings", [])
            if r.get("targetLabel") == "job" and "sourceLabels" not in r
        ]
        jobs |= {relabeled[-1]} if relabeled else default
    return jobs


@pytest.mark.parametrize("kit", ["central", "sharded", "examples/per-target", "examples/sidecar"])
def test_a_name_prefix_overlay_keeps_the_job_the_alerts_select(kit: str, tmp_path: Path) -> None:
    overlay = tmp_path / "prod"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {"namePrefix": "prod-", "resources": [os.path.relpath(KUBERNETES / kit, overlay)]}
        )
    )
    resources = kustomize_build(overlay)
    monitors = [r for r in resources if r["kind"] in OPERATOR_KINDS - {"PrometheusRule"}]
    assert monitors
    for monitor in monitors:
        assert monitor["metadata"]["name"].startswith("prod-")
        assert operator_job(monitor, resources) == {alert_job()}, monitor["kind"]


def test_the_job_check_notices_a_monitor_named_after_its_service(tmp_path: Path) -> None:
    resources = kustomize_build(KUBERNETES / "central")
    monitor = copy.deepcopy(one(resources, "ServiceMonitor"))
    for endpoint in monitor["spec"]["endpoints"]:
        endpoint.pop("relabelings", None)
    service = one(resources, "Service")
    service["metadata"]["name"] = "prod-whatsapp-support-exporter"
    assert operator_job(monitor, resources) == {"prod-whatsapp-support-exporter"}


def documented_overlay() -> str:
    """The remote-base overlay of docs/deploying.md, as written there."""
    section = DEPLOYING.read_text().split("### Your own configuration, the kit as a remote base")[1]
    (block,) = re.findall(r"```yaml\n(.*?)```", section.split("\n## ")[0], flags=re.DOTALL)
    return str(block)


USER_CONFIG = """\
auths:
  acme:
    api_key_file: /etc/whatsapp-support-exporter/secrets/acme-api-key
targets:
  - name: acme-1
    url: https://wa.acme.internal:9090
    auth: acme
"""


def test_the_documented_remote_base_overlay_builds_with_the_users_own_configuration(
    tmp_path: Path,
) -> None:
    text = documented_overlay()
    assert REMOTE_BASE + "central?ref=v" in text
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    local = os.path.relpath(KUBERNETES / "central", overlay)
    (overlay / "kustomization.yaml").write_text(
        re.sub(re.escape(REMOTE_BASE) + r"central\?ref=\S+", local, text)
    )
    (overlay / "config.yml").write_text(USER_CONFIG)
    resources = kustomize_build(overlay)
    config, files, secret_mount = mounted_config(resources)
    # The user's file alone: none of the kit's example targets or target files.
    assert config == yaml.safe_load(USER_CONFIG)
    assert list(files.values()) == [USER_CONFIG]
    (config_map,) = of_kind(resources, "ConfigMap")
    assert config_map["metadata"]["name"] == "prod-whatsapp-support-exporter-config"
    for path in configured_files(config):
        assert PurePosixPath(path).parent == PurePosixPath(secret_mount)
    deployment = one(resources, "Deployment")
    (secret,) = [
        v["secret"]["secretName"] for v in pod_spec(deployment)["volumes"] if "secret" in v
    ]
    assert f"`{secret}`" in DEPLOYING.read_text().split("### Your own configuration")[1]
    for resource in resources:
        if resource["kind"] in OPERATOR_KINDS:
            assert resource["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert operator_job(one(resources, "ServiceMonitor"), resources) == {alert_job()}
    for resource in resources:
        validate_kubernetes(resource)


def test_every_operator_resource_says_which_label_kube_prometheus_stack_selects() -> None:
    """The monitors and the rule carry the `release:` label as a comment, where it goes."""
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if any(isinstance(d, dict) and d.get("kind") in OPERATOR_KINDS for d in documents):
            assert "# release: kube-prometheus-stack" in path.read_text(), path
