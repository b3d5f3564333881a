"""Every kustomize kit builds and validates, locks its exporter down and ships the alerts.

Every kit and example is built by `kubectl kustomize` (`tests/kits.py`); the deployment guide
names them all.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy_tools import EXPORTER_IMAGE, EXPORTER_PORT, KUBERNETES, ROOT, run, tool
from tests.kits import (
    BUILDS,
    DEPLOYING,
    GENERATOR,
    OPERATOR_KINDS,
    RULES,
    SIDECAR,
    SIDECAR_LABEL,
    SIDECAR_LOGIN,
    WORKLOAD_KINDS,
    Resource,
    is_exporter,
    of_kind,
    one,
    pod_spec,
    validate_kubernetes,
    validate_operator_resource,
)


@pytest.fixture(scope="module")
def workloads(built_kits: dict[str, list[Resource]]) -> list[Resource]:
    return [
        r for resources in built_kits.values() for r in resources if r["kind"] in WORKLOAD_KINDS
    ]


@pytest.fixture(scope="module")
def exporter_containers(workloads: list[Resource]) -> list[dict[str, Any]]:
    found = [c for w in workloads for c in pod_spec(w)["containers"] if is_exporter(c)]
    # central, sharded, per-target (sharded), the example sidecar, acme's two sidecars
    assert len(found) == 6
    return found


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
    built_kits: dict[str, list[Resource]], name: str
) -> None:
    assert built_kits[name]
    for resource in built_kits[name]:
        validate_kubernetes(resource)


def test_built_resources_pass_the_kubernetes_validate_cli(
    built_kits: dict[str, list[Resource]], tmp_path: Path
) -> None:
    files = []
    for name, resources in built_kits.items():
        for i, resource in enumerate(r for r in resources if r["kind"] not in OPERATOR_KINDS):
            path = tmp_path / f"{name.replace('/', '-')}-{i}.yaml"
            path.write_text(yaml.safe_dump(resource))
            files.append(str(path))
    assert len(files) >= 10
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_an_unknown_field(built_kits: dict[str, list[Resource]]) -> None:
    statefulset = copy.deepcopy(one(built_kits["sharded"], "StatefulSet"))
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
    built_kits: dict[str, list[Resource]], name: str, kind: str, spoil: Any
) -> None:
    resource = copy.deepcopy(of_kind(built_kits[name], kind)[0])
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
    built_kits: dict[str, list[Resource]],
) -> None:
    """The example Webapp too; the containers of a user's own overlay are theirs to lock down."""
    for name in BUILDS:
        for workload in (r for r in built_kits[name] if r["kind"] in WORKLOAD_KINDS):
            for container in pod_spec(workload)["containers"]:
                sc = container["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, container["name"]
                assert sc.get("privileged", False) is False, container["name"]
                assert "ALL" in sc["capabilities"]["drop"], container["name"]


def test_our_own_pods_have_pod_level_seccomp_and_no_service_account_token(
    built_kits: dict[str, list[Resource]],
) -> None:
    for name in ("central", "sharded", "examples/sidecar"):
        for workload in (r for r in built_kits[name] if r["kind"] in WORKLOAD_KINDS):
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


# --- alerting rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["central", "sharded", "examples/sidecar"])
def test_every_kit_ships_the_alerting_rules(
    built_kits: dict[str, list[Resource]], name: str
) -> None:
    assert (
        one(built_kits[name], "PrometheusRule")["spec"]
        == one(built_kits["rules"], "PrometheusRule")["spec"]
    )


def test_the_prometheus_rule_holds_the_rules_file_groups(
    built_kits: dict[str, list[Resource]],
) -> None:
    rules = yaml.safe_load(RULES.read_text())
    assert one(built_kits["rules"], "PrometheusRule")["spec"]["groups"] == rules["groups"]


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
