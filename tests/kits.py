"""The kustomize kits as `kubectl apply -k` would send them, and the checks their tests share.

`build_every_kit` builds every kit and example with `kubectl kustomize`, and the sidecar
Component applied to a Webapp Deployment of another name, as a user's own would be.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import yaml

from tests.deploy_tools import EXPORTER_IMAGE, KUBERNETES, ROOT, run, tool

Resource = dict[str, Any]

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
GENERATOR = KUBERNETES / "generate-prometheusrule.py"
DEPLOYING = ROOT / "docs" / "deploying.md"
SIDECAR = KUBERNETES / "sidecar"
SIDECAR_LOGIN = KUBERNETES / "sidecar-login"
SIDECAR_LABEL = ("whatsapp-support-exporter/sidecar", "true")
BUILDS = ["central", "sharded", "rules", "examples/sidecar", "examples/per-target"]
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScrapeConfig"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
JOB_RELABELING = {
    "action": "replace",
    "targetLabel": "job",
    "replacement": "whatsapp-support-exporter",
}

# A user's Webapp Deployment that the project did not write: another name, other container and
# volume names, and a second Deployment that did not ask for the sidecar.
OTHER_WEBAPP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: acme-wa-api
  labels: {whatsapp-support-exporter/sidecar: "true", team: messaging}
spec:
  replicas: 2
  selector: {matchLabels: {app: acme-wa-api}}
  template:
    metadata: {labels: {app: acme-wa-api}}
    spec:
      containers:
        - name: api
          image: docker.whatsapp.biz/web:v2.53.2
          volumeMounts: [{name: media, mountPath: /usr/local/wamedia}]
      volumes:
        - name: media
          persistentVolumeClaim: {claimName: acme-wa-media}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: acme-coreapp
spec:
  selector: {matchLabels: {app: acme-coreapp}}
  template:
    metadata: {labels: {app: acme-coreapp}}
    spec:
      containers:
        - name: coreapp
          image: docker.whatsapp.biz/coreapp:v2.53.2
"""


def kustomize_build(directory: Path) -> list[Resource]:
    result = run(tool("kubectl"), "kustomize", str(directory))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def one(resources: list[Resource], kind: str) -> Resource:
    (found,) = of_kind(resources, kind)
    return found


def pod_spec(workload: Resource) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Resource) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def is_exporter(container: dict[str, Any]) -> bool:
    return bool(container["image"].split(":")[0] == EXPORTER_IMAGE)


def exporter_of(workload: Resource) -> dict[str, Any]:
    (container,) = [c for c in pod_spec(workload)["containers"] if is_exporter(c)]
    found: dict[str, Any] = container
    return found


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def env_field_ref(container: dict[str, Any], name: str) -> str:
    (entry,) = [e for e in container["env"] if e["name"] == name]
    path: str = entry["valueFrom"]["fieldRef"]["fieldPath"]
    return path


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def validate_operator_resource(resource: Resource) -> None:
    """Field-by-field check of the Prometheus Operator kinds, whose schemas kubernetes-validate lacks."""
    kind = resource["kind"]
    expected_version = "v1alpha1" if kind == "ScrapeConfig" else "v1"
    assert resource["apiVersion"] == f"monitoring.coreos.com/{expected_version}"
    assert set(resource) <= {"apiVersion", "kind", "metadata", "spec"}
    assert re.fullmatch(DNS_LABEL, resource["metadata"]["name"])
    spec = resource["spec"]
    allowed = {
        "ServiceMonitor": {"selector", "endpoints", "namespaceSelector", "jobLabel"},
        "PodMonitor": {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"},
        "PrometheusRule": {"groups"},
        "ScrapeConfig": {
            "httpSDConfigs",
            "staticConfigs",
            "metricsPath",
            "params",
            "scrapeInterval",
            "scrapeTimeout",
            "scheme",
            "honorLabels",
            "relabelings",
            "metricRelabelings",
        },
    }[kind]
    assert set(spec) <= allowed, f"{kind}: unknown fields {set(spec) - allowed}"
    if kind == "PrometheusRule":
        for group in spec["groups"]:
            assert set(group) <= {"name", "interval", "rules", "limit"}
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
        return
    if kind == "ScrapeConfig":
        assert spec.get("httpSDConfigs") or spec.get("staticConfigs")
        for sd in spec.get("httpSDConfigs", []):
            assert set(sd) <= {"url", "refreshInterval", "tlsConfig", "basicAuth"}
            assert re.fullmatch(r"https?://.+", sd["url"])
        assert re.fullmatch(r"\d+[smh]", spec["scrapeInterval"])
        validate_relabelings(spec.get("relabelings", []))
        validate_relabelings(spec.get("metricRelabelings", []))
        return
    endpoint_fields = {
        "port",
        "path",
        "interval",
        "scrapeTimeout",
        "scheme",
        "relabelings",
        "metricRelabelings",
        "honorLabels",
        "tlsConfig",
        "basicAuth",
    }
    endpoints = spec["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
    assert endpoints
    for endpoint in endpoints:
        assert set(endpoint) <= endpoint_fields, (
            f"{kind}: unknown {set(endpoint) - endpoint_fields}"
        )
        assert isinstance(endpoint["port"], str)
        validate_relabelings(endpoint.get("relabelings", []))
    assert spec["selector"]["matchLabels"]


def validate_relabelings(relabelings: list[dict[str, Any]]) -> None:
    fields = {"action", "sourceLabels", "separator", "targetLabel", "regex", "replacement"}
    actions = {"replace", "keep", "drop", "labeldrop", "labelkeep", "labelmap", "hashmod"}
    for relabeling in relabelings:
        assert set(relabeling) <= fields, f"unknown {set(relabeling) - fields}"
        assert relabeling.get("action", "replace") in actions


def validate_kubernetes(resource: Resource) -> None:
    if resource["kind"] in OPERATOR_KINDS:
        validate_operator_resource(resource)
    else:
        kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)


def configured_files(config: dict[str, Any]) -> set[str]:
    """Every file a configuration file names: secrets and CA bundles."""
    files = {
        auth[key]
        for auth in config.get("auths", {}).values()
        for key in ("api_key_file", "password_file")
        if key in auth
    }
    files |= {
        t["tls_config"]["ca_file"]
        for t in config["targets"]
        if "ca_file" in t.get("tls_config", {})
    }
    return files


def secret_keys_created_by(command: str) -> set[str]:
    """The keys `kubectl create secret generic NAME --from-file=KEY=PATH ...` creates."""
    words = shlex.split(command.replace("\\\n", " "))
    return {
        w.removeprefix("--from-file=").split("=")[0] for w in words if w.startswith("--from-file=")
    }


def mounted_config(resources: list[Resource]) -> tuple[dict[str, Any], dict[str, str], str]:
    """The exporter's configuration file (parsed), its ConfigMap's files, and the Secret mount."""
    workload = next(r for r in resources if r["kind"] in WORKLOAD_KINDS)
    exporter = exporter_of(workload)
    config_path = PurePosixPath(env(exporter)["WA_CONFIG_FILE"])
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    mounts = {m["mountPath"]: m for m in exporter["volumeMounts"]}
    config_mount = mounts[str(config_path.parent)]
    # A whole directory: subPath mounts never see a changed ConfigMap.
    assert "subPath" not in config_mount and config_mount["readOnly"] is True
    (config_map,) = [
        r
        for r in of_kind(resources, "ConfigMap")
        if r["metadata"]["name"] == volumes[config_mount["name"]]["configMap"]["name"]
    ]
    files: dict[str, str] = {str(config_path.parent / k): v for k, v in config_map["data"].items()}
    (secret_mount,) = [m for m in mounts.values() if "secret" in volumes[m["name"]]]
    assert secret_mount["readOnly"] is True
    return yaml.safe_load(files[str(config_path)]), files, secret_mount["mountPath"]


def user_overlay(directory: Path, components: list[Path]) -> Path:
    """A user's own kustomization in `directory`: their Deployments, plus `components`."""
    directory.mkdir()
    (directory / "webapp.yaml").write_text(OTHER_WEBAPP)
    relative = [os.path.relpath(c, directory) for c in components]
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["webapp.yaml"], "components": relative})
    )
    return directory


def build_every_kit(scratch: Path) -> dict[str, list[Resource]]:
    """The resources of each kit and example, and of the user's overlays ("acme", with the
    login "acme-login"), which are written under `scratch`."""
    kits = {name: kustomize_build(KUBERNETES / name) for name in BUILDS}
    kits["acme"] = kustomize_build(user_overlay(scratch / "acme-overlay", [SIDECAR]))
    kits["acme-login"] = kustomize_build(
        user_overlay(scratch / "acme-login-overlay", [SIDECAR, SIDECAR_LOGIN])
    )
    return kits
