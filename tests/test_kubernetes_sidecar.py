"""The sidecar Component: appended to a user's Webapp Deployment, it polls localhost with the
Pod's own key (and, with sidecar-login, a login), and its PodMonitor scrapes it."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from tests.kits import (
    JOB_RELABELING,
    OTHER_WEBAPP,
    SIDECAR_LABEL,
    Resource,
    env,
    env_field_ref,
    exporter_of,
    of_kind,
    one,
    pod_labels,
    pod_spec,
    selects,
)


@pytest.fixture(scope="module")
def sidecar_pods(built_kits: dict[str, list[Resource]]) -> list[Resource]:
    """The two Webapp Deployments the Component patched: the example's and acme's."""
    patched = [
        r
        for name in ("examples/sidecar", "acme")
        for r in of_kind(built_kits[name], "Deployment")
        if r["metadata"].get("labels", {}).get(SIDECAR_LABEL[0]) == SIDECAR_LABEL[1]
    ]
    assert [d["metadata"]["name"] for d in patched] == ["whatsapp-webapp", "acme-wa-api"]
    return patched


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
    built_kits: dict[str, list[Resource]],
) -> None:
    deployment = one(built_kits["examples/sidecar"], "Deployment")
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
    built_kits: dict[str, list[Resource]],
) -> None:
    resources = built_kits["acme-login"]
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
    sidecar_pods: list[Resource], built_kits: dict[str, list[Resource]]
) -> None:
    for deployment, name in zip(sidecar_pods, ("examples/sidecar", "acme"), strict=True):
        variables = exporter_environment(built_kits[name], deployment)
        assert "WA_PASSWORD_FILE" not in variables
        # The username key is optional: a Secret with the API key alone starts the Pod.
        assert variables["WA_USERNAME"]["secretKeyRef"]["optional"] is True
        volume = next(
            v for v in pod_spec(deployment)["volumes"] if v["name"] == "wa-exporter-api-key"
        )
        assert [i["key"] for i in volume["secret"]["items"]] == ["api-key"]


def test_sidecar_keeps_the_users_volumes_labels_and_selector(
    built_kits: dict[str, list[Resource]],
) -> None:
    original = next(
        d for d in yaml.safe_load_all(OTHER_WEBAPP) if d["metadata"]["name"] == "acme-wa-api"
    )
    (patched,) = [
        d
        for d in of_kind(built_kits["acme"], "Deployment")
        if d["metadata"]["name"] == "acme-wa-api"
    ]
    assert patched["spec"]["selector"] == original["spec"]["selector"]
    assert patched["spec"]["replicas"] == 2
    assert pod_labels(patched) == {**pod_labels(original), SIDECAR_LABEL[0]: SIDECAR_LABEL[1]}
    volumes = [v["name"] for v in pod_spec(patched)["volumes"]]
    assert "media" in volumes and len(volumes) == len(set(volumes))
    assert pod_spec(patched)["containers"][0] == pod_spec(original)["containers"][0]


def test_sidecar_leaves_deployments_without_the_label_alone(
    built_kits: dict[str, list[Resource]],
) -> None:
    original = next(
        d for d in yaml.safe_load_all(OTHER_WEBAPP) if d["metadata"]["name"] == "acme-coreapp"
    )
    (untouched,) = [
        d
        for d in of_kind(built_kits["acme"], "Deployment")
        if d["metadata"]["name"] == "acme-coreapp"
    ]
    assert untouched == original


def test_sidecar_pod_monitor_selects_the_patched_pods_and_names_the_job(
    built_kits: dict[str, list[Resource]], sidecar_pods: list[Resource]
) -> None:
    monitor = one(built_kits["acme"], "PodMonitor")
    assert monitor == one(built_kits["examples/sidecar"], "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for deployment in sidecar_pods:
        assert selects(monitor["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        assert endpoint["port"] in {p["name"] for p in exporter_of(deployment)["ports"]}
    assert JOB_RELABELING in endpoint["relabelings"]
    # Only the patched Pods: the unlabelled Deployment's Pods are not scraped.
    (coreapp,) = [
        d
        for d in of_kind(built_kits["acme"], "Deployment")
        if d["metadata"]["name"] == "acme-coreapp"
    ]
    assert not selects(monitor["spec"]["selector"]["matchLabels"], pod_labels(coreapp))
