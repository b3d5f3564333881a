"""The kustomize kits as `kubectl apply -k` would send them: valid, locked down, wired together.

Every kit and example is built by `kubectl kustomize`; the sidecar Component is also applied to a
Webapp Deployment of another name, as a user's own would be.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy_tools import EXPORTER_IMAGE, EXPORTER_PORT, KUBERNETES, ROOT, run, tool

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


# --- helpers --------------------------------------------------------------------------------------


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


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_webapp_overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's own kustomization: their Deployments, plus the sidecar Component."""
    directory = tmp_path_factory.mktemp("acme-overlay")
    (directory / "webapp.yaml").write_text(OTHER_WEBAPP)
    component = os.path.relpath(SIDECAR, directory)
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["webapp.yaml"], "components": [component]})
    )
    return directory


@pytest.fixture(scope="module")
def other_webapp_login_overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same user's kustomization with the sidecar and the sidecar-login Components."""
    directory = tmp_path_factory.mktemp("acme-login-overlay")
    (directory / "webapp.yaml").write_text(OTHER_WEBAPP)
    components = [os.path.relpath(c, directory) for c in (SIDECAR, SIDECAR_LOGIN)]
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["webapp.yaml"], "components": components})
    )
    return directory


@pytest.fixture(scope="module")
def built(
    other_webapp_overlay: Path, other_webapp_login_overlay: Path
) -> dict[str, list[Resource]]:
    """The resources of each kit and example, and of the user's overlays ("acme", with the
    login "acme-login")."""
    kits = {name: kustomize_build(KUBERNETES / name) for name in BUILDS}
    kits["acme"] = kustomize_build(other_webapp_overlay)
    kits["acme-login"] = kustomize_build(other_webapp_login_overlay)
    return kits


@pytest.fixture(scope="module")
def workloads(built: dict[str, list[Resource]]) -> list[Resource]:
    return [r for resources in built.values() for r in resources if r["kind"] in WORKLOAD_KINDS]


@pytest.fixture(scope="module")
def exporter_containers(workloads: list[Resource]) -> list[dict[str, Any]]:
    found = [c for w in workloads for c in pod_spec(w)["containers"] if is_exporter(c)]
    # central, sharded, per-target (sharded), the example sidecar, acme's two sidecars
    assert len(found) == 6
    return found


@pytest.fixture(scope="module")
def sidecar_pods(built: dict[str, list[Resource]]) -> list[Resource]:
    """The two Webapp Deployments the Component patched: the example's and acme's."""
    patched = [
        r
        for name in ("examples/sidecar", "acme")
        for r in of_kind(built[name], "Deployment")
        if r["metadata"].get("labels", {}).get(SIDECAR_LABEL[0]) == SIDECAR_LABEL[1]
    ]
    assert [d["metadata"]["name"] for d in patched] == ["whatsapp-webapp", "acme-wa-api"]
    return patched


def walk_kustomizations() -> Iterator[Path]:
    for path in sorted(KUBERNETES.rglob("kustomization.yaml")):
        yield path.parent


# --- every kit builds and validates ---------------------------------------------------------------


def test_every_kustomization_is_built_or_used_as_a_component_by_a_build() -> None:
    covered = {KUBERNETES / name for name in BUILDS} | {SIDECAR, SIDECAR_LOGIN}
    assert set(walk_kustomizations()) == covered


def test_every_file_in_a_kit_is_used_by_its_kustomization() -> None:
    for directory in walk_kustomizations():
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        used = set(kustomization.get("resources", []))
        used |= {p["path"] for p in kustomization.get("patches", []) if "path" in p}
        used |= {f for g in kustomization.get("configMapGenerator", []) for f in g.get("files", [])}
        on_disk = {p.name for p in directory.iterdir() if p.is_file()} - {"kustomization.yaml"}
        assert on_disk <= used, f"{directory}: not used: {on_disk - used}"
        for name in used:
            assert (directory / name).exists(), f"{directory}: {name} does not exist"


@pytest.mark.parametrize("component", [SIDECAR, SIDECAR_LOGIN], ids=lambda p: p.name)
def test_the_sidecar_kits_are_kustomize_components(component: Path) -> None:
    kustomization = yaml.safe_load((component / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert kustomization["kind"] == "Component"
    for patch in kustomization["patches"]:
        assert patch["target"]["labelSelector"] == "=".join(SIDECAR_LABEL)


@pytest.mark.parametrize("name", [*BUILDS, "acme", "acme-login"])
def test_built_resources_pass_strict_kubernetes_validation(
    built: dict[str, list[Resource]], name: str
) -> None:
    assert built[name]
    for resource in built[name]:
        validate_kubernetes(resource)


def test_built_resources_pass_the_kubernetes_validate_cli(
    built: dict[str, list[Resource]], tmp_path: Path
) -> None:
    files = []
    for name, resources in built.items():
        for i, resource in enumerate(r for r in resources if r["kind"] not in OPERATOR_KINDS):
            path = tmp_path / f"{name.replace('/', '-')}-{i}.yaml"
            path.write_text(yaml.safe_dump(resource))
            files.append(str(path))
    assert len(files) >= 10
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_an_unknown_field(built: dict[str, list[Resource]]) -> None:
    statefulset = copy.deepcopy(one(built["sharded"], "StatefulSet"))
    pod_spec(statefulset)["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_kubernetes(statefulset)


@pytest.mark.parametrize(
    ("name", "kind", "spoil"),
    [
        ("central", "ServiceMonitor", lambda s: s["endpoints"][0].update(intervall="30s")),
        ("sharded", "PodMonitor", lambda s: s["podMetricsEndpoints"][0].update(paht="/")),
        ("examples/per-target", "ScrapeConfig", lambda s: s.update(httpSDConfig=[])),
        ("examples/per-target", "ScrapeConfig", lambda s: s["relabelings"][0].update(target="x")),
    ],
)
def test_operator_resource_check_rejects_an_unknown_field(
    built: dict[str, list[Resource]], name: str, kind: str, spoil: Any
) -> None:
    resource = copy.deepcopy(of_kind(built[name], kind)[0])
    spoil(resource["spec"])
    with pytest.raises(AssertionError):
        validate_operator_resource(resource)


# --- every exporter container ---------------------------------------------------------------------


def test_exporter_containers_have_the_restricted_security_context(
    exporter_containers: list[dict[str, Any]],
) -> None:
    for container in exporter_containers:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
        assert isinstance(sc["runAsGroup"], int) and sc["runAsGroup"] > 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc.get("privileged", False) is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc["capabilities"].get("add")
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"


def test_every_container_of_our_kits_forbids_privilege_escalation_and_drops_capabilities(
    built: dict[str, list[Resource]],
) -> None:
    """The example Webapp too; the containers of a user's own overlay are theirs to lock down."""
    for name in BUILDS:
        for workload in (r for r in built[name] if r["kind"] in WORKLOAD_KINDS):
            for container in pod_spec(workload)["containers"]:
                sc = container["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, container["name"]
                assert sc.get("privileged", False) is False, container["name"]
                assert "ALL" in sc["capabilities"]["drop"], container["name"]


def test_our_own_pods_have_pod_level_seccomp_and_no_service_account_token(
    built: dict[str, list[Resource]],
) -> None:
    for name in ("central", "sharded", "examples/sidecar"):
        for workload in (r for r in built[name] if r["kind"] in WORKLOAD_KINDS):
            spec = pod_spec(workload)
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            assert spec["automountServiceAccountToken"] is False


def test_exporter_containers_have_resource_requests_and_a_memory_limit(
    exporter_containers: list[dict[str, Any]],
) -> None:
    for container in exporter_containers:
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]


def test_exporter_probes_use_healthy_for_liveness_and_ready_for_readiness(
    exporter_containers: list[dict[str, Any]],
) -> None:
    for container in exporter_containers:
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"wa-metrics": EXPORTER_PORT}
        liveness = container["livenessProbe"]["httpGet"]
        readiness = container["readinessProbe"]["httpGet"]
        assert liveness["path"] == "/-/healthy"
        assert readiness["path"] == "/-/ready"
        assert ports[liveness["port"]] == ports[readiness["port"]] == EXPORTER_PORT


def test_exporter_images_are_pinned_to_one_release(
    exporter_containers: list[dict[str, Any]],
) -> None:
    tags = {c["image"].partition(":")[2] for c in exporter_containers}
    (tag,) = tags
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), tag


def test_secrets_reach_the_exporter_as_files_never_as_variables(
    exporter_containers: list[dict[str, Any]],
) -> None:
    for container in exporter_containers:
        variables = {e["name"] for e in container["env"]}
        assert not variables & {"WA_API_KEY", "WA_PASSWORD"}
        # Only the login's username (not a secret) may come from a Secret as a variable.
        from_secrets = {
            e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert from_secrets <= {"WA_USERNAME"}
        assert not any("secretRef" in source for source in container.get("envFrom", []))


# --- the sidecar Component ------------------------------------------------------------------------


def test_sidecar_is_appended_after_the_users_containers(sidecar_pods: list[Resource]) -> None:
    names = [[c["name"] for c in pod_spec(d)["containers"]] for d in sidecar_pods]
    # The user's container stays first: `kubectl logs` and `exec` still default to it.
    assert names == [["webapp", "wa-exporter"], ["api", "wa-exporter"]]


def test_sidecar_target_is_named_after_the_pod_and_polls_localhost(
    sidecar_pods: list[Resource],
) -> None:
    for deployment in sidecar_pods:
        exporter = exporter_of(deployment)
        names = [e["name"] for e in exporter["env"]]
        # $(POD_NAME) only expands when POD_NAME is defined before it.
        assert names.index("POD_NAME") < names.index("WA_TARGETS")
        assert env_field_ref(exporter, "POD_NAME") == "metadata.name"
        (target,) = env(exporter)["WA_TARGETS"].split(",")
        assert re.fullmatch(r"\$\(POD_NAME\)=https://localhost(:\d+)?", target), target


def test_sidecar_reads_the_api_key_from_a_mounted_secret_file(
    sidecar_pods: list[Resource],
) -> None:
    for deployment in sidecar_pods:
        spec = pod_spec(deployment)
        exporter = exporter_of(deployment)
        key_file = PurePosixPath(env(exporter)["WA_API_KEY_FILE"])
        (mount,) = [m for m in exporter["volumeMounts"] if key_file.is_relative_to(m["mountPath"])]
        assert mount["readOnly"] is True and "subPath" not in mount
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        secret = volume["secret"]
        assert secret["secretName"] == "whatsapp-api-key"
        items = {i["path"]: i["key"] for i in secret["items"]}
        assert items == {str(key_file.relative_to(mount["mountPath"])): "api-key"}
        # Readable by the exporter's user without an fsGroup imposed on the user's Pod.
        assert "fsGroup" not in spec.get("securityContext", {})
        assert secret["defaultMode"] & 0o004


def test_example_webapp_takes_the_same_key_from_the_same_secret(
    built: dict[str, list[Resource]],
) -> None:
    deployment = one(built["examples/sidecar"], "Deployment")
    (webapp,) = [c for c in pod_spec(deployment)["containers"] if c["name"] == "webapp"]
    (key,) = [e for e in webapp["env"] if e["name"] == "WA_API_KEY"]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "whatsapp-api-key", "key": "api-key"}


def secret_file(deployment: Resource, path: str) -> tuple[str, str]:
    """(Secret name, key) of the file at ``path`` in the exporter of ``deployment``."""
    spec, exporter = pod_spec(deployment), exporter_of(deployment)
    (mount,) = [
        m for m in exporter["volumeMounts"] if PurePosixPath(path).is_relative_to(m["mountPath"])
    ]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    relative = str(PurePosixPath(path).relative_to(mount["mountPath"]))
    items = {i["path"]: i["key"] for i in volume["secret"]["items"]}
    return volume["secret"]["secretName"], items[relative]


def exporter_environment(resources: list[Resource], deployment: Resource) -> dict[str, Any]:
    """The exporter's variables as the kubelet sets them: envFrom ConfigMaps of the build
    (optional ones may be missing), then env (values, or the valueFrom)."""
    exporter = exporter_of(deployment)
    maps = {r["metadata"]["name"]: r.get("data", {}) for r in of_kind(resources, "ConfigMap")}
    found: dict[str, Any] = {}
    for source in exporter.get("envFrom", []):
        ref = source["configMapRef"]
        assert ref["name"] in maps or ref.get("optional") is True, ref
        found.update(maps.get(ref["name"], {}))
    for entry in exporter["env"]:
        found[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return found


def test_sidecar_login_component_gives_the_exporter_a_login_from_the_same_secret(
    built: dict[str, list[Resource]],
) -> None:
    resources = built["acme-login"]
    (deployment,) = [
        d for d in of_kind(resources, "Deployment") if d["metadata"]["name"] == "acme-wa-api"
    ]
    variables = exporter_environment(resources, deployment)
    assert variables["WA_USERNAME"]["secretKeyRef"] == {
        "name": "whatsapp-api-key",
        "key": "username",
        "optional": True,
    }
    assert secret_file(deployment, variables["WA_PASSWORD_FILE"]) == (
        "whatsapp-api-key",
        "password",
    )
    assert secret_file(deployment, variables["WA_API_KEY_FILE"]) == ("whatsapp-api-key", "api-key")
    # The user's container stays first.
    assert [c["name"] for c in pod_spec(deployment)["containers"]] == ["api", "wa-exporter"]


def test_sidecar_without_the_login_component_sets_no_password_and_needs_no_login_keys(
    sidecar_pods: list[Resource], built: dict[str, list[Resource]]
) -> None:
    for deployment, name in zip(sidecar_pods, ("examples/sidecar", "acme"), strict=True):
        variables = exporter_environment(built[name], deployment)
        assert "WA_PASSWORD_FILE" not in variables
        # The username key is optional: a Secret with the API key alone starts the Pod.
        assert variables["WA_USERNAME"]["secretKeyRef"]["optional"] is True
        volume = next(
            v for v in pod_spec(deployment)["volumes"] if v["name"] == "wa-exporter-api-key"
        )
        assert [i["key"] for i in volume["secret"]["items"]] == ["api-key"]


def test_sidecar_keeps_the_users_volumes_labels_and_selector(
    built: dict[str, list[Resource]],
) -> None:
    original = next(
        d for d in yaml.safe_load_all(OTHER_WEBAPP) if d["metadata"]["name"] == "acme-wa-api"
    )
    (patched,) = [
        d for d in of_kind(built["acme"], "Deployment") if d["metadata"]["name"] == "acme-wa-api"
    ]
    assert patched["spec"]["selector"] == original["spec"]["selector"]
    assert patched["spec"]["replicas"] == 2
    assert pod_labels(patched) == {**pod_labels(original), SIDECAR_LABEL[0]: SIDECAR_LABEL[1]}
    volumes = [v["name"] for v in pod_spec(patched)["volumes"]]
    assert "media" in volumes and len(volumes) == len(set(volumes))
    assert pod_spec(patched)["containers"][0] == pod_spec(original)["containers"][0]


def test_sidecar_leaves_deployments_without_the_label_alone(
    built: dict[str, list[Resource]],
) -> None:
    original = next(
        d for d in yaml.safe_load_all(OTHER_WEBAPP) if d["metadata"]["name"] == "acme-coreapp"
    )
    (untouched,) = [
        d for d in of_kind(built["acme"], "Deployment") if d["metadata"]["name"] == "acme-coreapp"
    ]
    assert untouched == original


def test_sidecar_pod_monitor_selects_the_patched_pods_and_names_the_job(
    built: dict[str, list[Resource]], sidecar_pods: list[Resource]
) -> None:
    monitor = one(built["acme"], "PodMonitor")
    assert monitor == one(built["examples/sidecar"], "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for deployment in sidecar_pods:
        assert selects(monitor["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        assert endpoint["port"] in {p["name"] for p in exporter_of(deployment)["ports"]}
    assert JOB_RELABELING in endpoint["relabelings"]
    # Only the patched Pods: the unlabelled Deployment's Pods are not scraped.
    (coreapp,) = [
        d for d in of_kind(built["acme"], "Deployment") if d["metadata"]["name"] == "acme-coreapp"
    ]
    assert not selects(monitor["spec"]["selector"]["matchLabels"], pod_labels(coreapp))


# --- central and sharded: the configuration file --------------------------------------------------


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


@pytest.mark.parametrize("name", ["central", "sharded"])
def test_exporter_reads_its_configuration_file_from_the_config_map(
    built: dict[str, list[Resource]], name: str
) -> None:
    config, _, _ = mounted_config(built[name])
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
    built: dict[str, list[Resource]], name: str
) -> None:
    config, _, secret_mount = mounted_config(built[name])
    files = configured_files(config)
    assert files
    for path in files:
        assert PurePosixPath(path).parent == PurePosixPath(secret_mount), path


@pytest.mark.parametrize("name", ["central", "sharded"])
def test_target_files_globs_match_file_sd_lists_in_the_config_map(
    built: dict[str, list[Resource]], name: str
) -> None:
    config, files, _ = mounted_config(built[name])
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
    built: dict[str, list[Resource]], name: str
) -> None:
    config, _, _ = mounted_config(built[name])
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
    built: dict[str, list[Resource]],
) -> None:
    resources = built["central"]
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
    built: dict[str, list[Resource]],
) -> None:
    statefulset = one(built["sharded"], "StatefulSet")
    exporter = exporter_of(statefulset)
    assert statefulset["spec"]["replicas"] >= 2
    assert env(exporter)["WA_TOTAL_SHARDS"] == str(statefulset["spec"]["replicas"])
    assert env_field_ref(exporter, "WA_SHARD") == "metadata.name"


def test_sharded_statefulset_has_a_headless_service_selecting_its_pods(
    built: dict[str, list[Resource]],
) -> None:
    statefulset, service = one(built["sharded"], "StatefulSet"), one(built["sharded"], "Service")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert selects(service["spec"]["selector"], pod_labels(statefulset))
    assert selects(statefulset["spec"]["selector"]["matchLabels"], pod_labels(statefulset))


def test_sharded_pod_monitor_scrapes_every_replica(built: dict[str, list[Resource]]) -> None:
    statefulset, monitor = one(built["sharded"], "StatefulSet"), one(built["sharded"], "PodMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], pod_labels(statefulset))
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in exporter_of(statefulset)["ports"]}
    assert JOB_RELABELING in endpoint["relabelings"]


def test_sharded_disruption_budget_lets_one_replica_go_at_a_time(
    built: dict[str, list[Resource]],
) -> None:
    statefulset = one(built["sharded"], "StatefulSet")
    budget = one(built["sharded"], "PodDisruptionBudget")
    assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels(statefulset))
    assert budget["spec"]["maxUnavailable"] == 1


def test_per_target_example_discovers_every_replica_and_drops_the_pod_monitor(
    built: dict[str, list[Resource]],
) -> None:
    resources = built["examples/per-target"]
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
    built: dict[str, list[Resource]],
) -> None:
    """The reload and sharding alerts and the dashboard's exporter row need them; the targets'
    series are dropped there (the per-target scrapes have them), `instance` is the same."""
    scrapes = {
        r["metadata"]["name"]: r["spec"]
        for r in of_kind(built["examples/per-target"], "ScrapeConfig")
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


# --- alerting rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["central", "sharded", "examples/sidecar"])
def test_every_kit_ships_the_alerting_rules(built: dict[str, list[Resource]], name: str) -> None:
    assert (
        one(built[name], "PrometheusRule")["spec"] == one(built["rules"], "PrometheusRule")["spec"]
    )


def test_the_prometheus_rule_holds_the_rules_file_groups(built: dict[str, list[Resource]]) -> None:
    rules = yaml.safe_load(RULES.read_text())
    assert one(built["rules"], "PrometheusRule")["spec"]["groups"] == rules["groups"]


def test_prometheus_rule_file_is_what_the_generator_produces() -> None:
    result = run(sys.executable, str(GENERATOR), "--check")
    assert result.returncode == 0, result.stderr


def test_generator_check_notices_an_edited_prometheus_rule(tmp_path: Path) -> None:
    copied = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", copied)
    edited = copied / "kubernetes" / "rules" / "prometheusrule.yaml"
    edited.write_text(edited.read_text().replace("for: 5m", "for: 6m", 1))
    result = run(sys.executable, str(copied / "kubernetes" / GENERATOR.name), "--check")
    assert result.returncode == 1


# --- the deployment guide -------------------------------------------------------------------------


def test_deploying_guide_names_every_kit_and_the_set_image_line() -> None:
    text = DEPLOYING.read_text()
    for name in ["sidecar", "sidecar-login", "central", "sharded", *BUILDS[3:]]:
        assert f"deploy/kubernetes/{name}" in text, name
    (line,) = re.findall(r"kustomize edit set image (\S+)=(\S+)", text)
    assert line[0] == EXPORTER_IMAGE
    assert re.fullmatch(r"[\w.-]+(:\d+)?/[\w./-]+:\d+\.\d+\.\d+", line[1]), line[1]
    assert "=".join(SIDECAR_LABEL).replace("=", ': "') + '"' in text


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
