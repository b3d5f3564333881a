"""Kubernetes manifests, Prometheus configuration, YAML style and the container image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
GENERATOR = KUBERNETES / "generate-prometheusrule.py"
PROMETHEUS_RULE = KUBERNETES / "rules" / "prometheusrule.yaml"
DOCKERFILE = ROOT / "Dockerfile"

KUSTOMIZATIONS = ["central", "sidecar", "rules"]
EXPORTER_IMAGE = "ghcr.io/whatsapp-support-exporter/whatsapp-support-exporter"
EXPORTER_PORT = 10042
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}


# --- helpers --------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A command-line tool from PATH or from this interpreter's virtual environment."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed")
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False, cwd=cwd)


def read_kustomization_resources(directory: Path) -> list[dict[str, Any]]:
    """What `kustomize build` emits, minus its transformations (for hosts without kustomize)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    documents: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = (directory / resource).resolve()
        if path.is_dir():
            documents += read_kustomization_resources(path)
        else:
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if kustomize:
        result = run(kustomize, "build", str(directory))
    elif kubectl:
        result = run(kubectl, "kustomize", str(directory))
    else:
        return read_kustomization_resources(directory)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    return resource["spec"]["template"]["spec"]


def is_exporter(container: dict[str, Any]) -> bool:
    return container["image"].split(":")[0] == EXPORTER_IMAGE


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def validate_operator_resource(resource: dict[str, Any]) -> None:
    """Structural check of the Prometheus Operator kinds, which kubernetes-validate lacks."""
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", resource["metadata"]["name"])
    spec = resource["spec"]
    kind = resource["kind"]
    allowed = {
        "ServiceMonitor": {"selector", "endpoints", "namespaceSelector", "jobLabel"},
        "PodMonitor": {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"},
        "PrometheusRule": {"groups"},
    }[kind]
    assert set(spec) <= allowed, f"{kind}: unknown fields {set(spec) - allowed}"
    if kind == "PrometheusRule":
        for group in spec["groups"]:
            assert set(group) <= {"name", "interval", "rules", "limit"}
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
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
        for relabeling in endpoint.get("relabelings", []):
            assert relabeling.get("action", "replace") in {
                "replace",
                "keep",
                "drop",
                "labeldrop",
                "labelkeep",
                "labelmap",
            }
    assert spec["selector"]["matchLabels"]


def validate_kubernetes(resource: dict[str, Any]) -> None:
    if resource["kind"] in OPERATOR_KINDS:
        validate_operator_resource(resource)
    else:
        kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    """The resources of each kustomization, as `kubectl apply -k` would send them."""
    return {name: kustomize_build(KUBERNETES / name) for name in KUSTOMIZATIONS}


@pytest.fixture(scope="module")
def workloads(built) -> list[dict[str, Any]]:
    return [r for resources in built.values() for r in resources if r["kind"] in WORKLOAD_KINDS]


@pytest.fixture(scope="module")
def containers(workloads) -> list[dict[str, Any]]:
    return [c for w in workloads for c in pod_spec(w)["containers"]]


@pytest.fixture(scope="module")
def exporter_containers(containers) -> list[dict[str, Any]]:
    found = [c for c in containers if is_exporter(c)]
    assert len(found) == 2, "one exporter in the central Deployment, one sidecar"
    return found


# --- Kubernetes -----------------------------------------------------------------------------------


def test_every_kustomization_lists_every_manifest_in_its_directory():
    for name in KUSTOMIZATIONS:
        directory = KUBERNETES / name
        listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
        on_disk = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert on_disk <= listed, f"{name}: not in kustomization.yaml: {on_disk - listed}"
        for resource in listed:
            assert (directory / resource).exists(), f"{name}: {resource} does not exist"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_resources_pass_strict_kubernetes_validation(built, name):
    assert built[name]
    for resource in built[name]:
        validate_kubernetes(resource)


def test_every_manifest_file_passes_the_kubernetes_validate_cli():
    files = [
        str(p)
        for p in sorted(KUBERNETES.rglob("*.yaml"))
        if p.name != "kustomization.yaml"
        and yaml.safe_load(p.read_text())["kind"] not in OPERATOR_KINDS
    ]
    assert len(files) >= 4
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_an_unknown_field():
    deployment = yaml.safe_load((KUBERNETES / "central" / "deployment.yaml").read_text())
    pod_spec(deployment)["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_kubernetes(deployment)


def test_operator_resource_check_rejects_an_unknown_field():
    monitor = yaml.safe_load((KUBERNETES / "central" / "servicemonitor.yaml").read_text())
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(AssertionError):
        validate_operator_resource(monitor)


def test_exporter_containers_have_the_restricted_security_context(workloads, exporter_containers):
    for container in exporter_containers:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
        assert isinstance(sc["runAsGroup"], int) and sc["runAsGroup"] > 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc["capabilities"].get("add")
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"


def test_every_container_forbids_privilege_escalation_and_drops_capabilities(workloads):
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, container["name"]
            assert sc.get("privileged", False) is False, container["name"]
            assert "ALL" in sc["capabilities"]["drop"], container["name"]


def test_every_container_has_resource_requests_and_a_memory_limit(containers):
    for container in containers:
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert "memory" in resources["limits"], container["name"]


def test_exporter_probes_use_healthy_for_liveness_and_ready_for_readiness(exporter_containers):
    for container in exporter_containers:
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"wa-metrics": EXPORTER_PORT}
        liveness = container["livenessProbe"]["httpGet"]
        readiness = container["readinessProbe"]["httpGet"]
        assert liveness["path"] == "/-/healthy"
        assert readiness["path"] == "/-/ready"
        assert ports[liveness["port"]] == ports[readiness["port"]] == EXPORTER_PORT


def test_exporter_images_are_pinned_to_a_version(exporter_containers):
    for container in exporter_containers:
        _, _, tag = container["image"].partition(":")
        assert tag and tag != "latest", container["image"]


def test_sidecar_pod_runs_the_webapp_and_the_exporter_polling_localhost(built):
    (deployment,) = [r for r in built["sidecar"] if r["kind"] == "Deployment"]
    spec = pod_spec(deployment)
    names = [c["name"] for c in spec["containers"]]
    assert names == ["webapp", "exporter"]
    (exporter,) = [c for c in spec["containers"] if is_exporter(c)]
    targets = env(exporter)["WA_TARGETS"].split(",")
    assert len(targets) == 1
    assert re.fullmatch(r"[\w-]+=https://localhost(:\d+)?", targets[0])


def test_sidecar_exporter_reads_the_api_key_from_a_mounted_secret_file(built):
    (deployment,) = [r for r in built["sidecar"] if r["kind"] == "Deployment"]
    spec = pod_spec(deployment)
    (exporter,) = [c for c in spec["containers"] if is_exporter(c)]
    variables = env(exporter)
    assert "WA_API_KEY" not in variables, "the key must not be an environment variable"
    key_file = Path(variables["WA_API_KEY_FILE"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    (mount,) = [m for m in exporter["volumeMounts"] if key_file.is_relative_to(m["mountPath"])]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    items = {i["path"]: i["key"] for i in secret.get("items", [])}
    file_name = str(key_file.relative_to(mount["mountPath"]))
    assert file_name in items or not items
    # The Webapp takes the same key from the same Secret.
    (webapp,) = [c for c in spec["containers"] if c["name"] == "webapp"]
    (webapp_key,) = [e for e in webapp["env"] if e["name"] == "WA_API_KEY"]
    assert webapp_key["valueFrom"]["secretKeyRef"]["name"] == secret["secretName"]


def test_central_deployment_polls_several_targets_with_credentials_from_files(built):
    (deployment,) = [r for r in built["central"] if r["kind"] == "Deployment"]
    (exporter,) = pod_spec(deployment)["containers"]
    variables = env(exporter)
    targets = variables["WA_TARGETS"].split(",")
    assert len(targets) >= 2
    assert all(re.fullmatch(r"[\w-]+=https://\S+", t) for t in targets)
    assert "WA_API_KEY" not in variables and "WA_PASSWORD" not in variables
    assert variables["WA_API_KEY_FILE"].startswith("/etc/")
    assert variables["WA_PASSWORD_FILE"].startswith("/etc/")


def test_service_monitor_selects_the_exporter_service_port(built):
    resources = built["central"]
    (service,) = [r for r in resources if r["kind"] == "Service"]
    (monitor,) = [r for r in resources if r["kind"] == "ServiceMonitor"]
    (deployment,) = [r for r in resources if r["kind"] == "Deployment"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    # The Operator names the job after the Service; the alerts expect this job name.
    assert service["metadata"]["name"] == "whatsapp-support-exporter"


def test_pod_monitor_selects_the_sidecar_pods_and_names_the_job(built):
    resources = built["sidecar"]
    (monitor,) = [r for r in resources if r["kind"] == "PodMonitor"]
    (deployment,) = [r for r in resources if r["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"] for c in pod_spec(deployment)["containers"] for p in c.get("ports", [])}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports
    assert {
        "action": "replace",
        "targetLabel": "job",
        "replacement": "whatsapp-support-exporter",
    } in endpoint["relabelings"]


def test_prometheus_rule_groups_equal_the_rules_file_groups(built):
    rules = yaml.safe_load(RULES.read_text())
    for name in ("central", "sidecar"):
        (rule,) = [r for r in built[name] if r["kind"] == "PrometheusRule"]
        assert rule["spec"]["groups"] == rules["groups"]


def test_prometheus_rule_file_is_what_the_generator_produces():
    result = run(sys.executable, str(GENERATOR), "--check")
    assert result.returncode == 0, result.stderr


def test_generator_check_notices_an_edited_prometheus_rule(tmp_path):
    copy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", copy)
    edited = copy / "kubernetes" / "rules" / "prometheusrule.yaml"
    edited.write_text(edited.read_text().replace("for: 5m", "for: 6m", 1))
    result = run(sys.executable, str(copy / "kubernetes" / GENERATOR.name), "--check")
    assert result.returncode == 1


# --- Prometheus configuration ---------------------------------------------------------------------


def test_example_prometheus_config_passes_promtool_check_config():
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_loads_the_alert_rules():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [PROMETHEUS / f for f in config["rule_files"]] == [RULES]


def test_scrape_config_examples_pass_promtool_check_config(tmp_path):
    scrape = yaml.safe_load((PROMETHEUS / "scrape-config.yml").read_text())
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": scrape["scrape_configs"]}))
    result = run(tool("promtool"), "check", "config", str(config))
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool is built without Kubernetes discovery (Debian's package)")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_examples_cover_static_and_kubernetes_pod_discovery():
    jobs = yaml.safe_load((PROMETHEUS / "scrape-config.yml").read_text())["scrape_configs"]
    static = [j for j in jobs if "static_configs" in j]
    kubernetes = [j for j in jobs if "kubernetes_sd_configs" in j]
    assert static and kubernetes
    assert kubernetes[0]["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = [r for r in kubernetes[0]["relabel_configs"] if r.get("action") == "keep"]
    assert {
        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
        "regex": "wa-metrics",
        "action": "keep",
    } in keep
    for job in jobs:
        # Both end up as job="whatsapp-support-exporter", which WhatsAppExporterDown selects.
        relabeled = [
            r.get("replacement")
            for r in job.get("relabel_configs", [])
            if r.get("target_label") == "job"
        ]
        assert (relabeled or [job["job_name"]])[-1] == "whatsapp-support-exporter"
        assert str(EXPORTER_PORT) in str(job.get("static_configs", EXPORTER_PORT))


# --- YAML and Dockerfile lint ---------------------------------------------------------------------


def test_all_yaml_passes_yamllint_strict():
    result = run(tool("yamllint"), "-s", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_config_still_catches_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("key: value\nkey: other\n")
    result = run(tool("yamllint"), "-s", "-c", str(ROOT / ".yamllint.yaml"), str(bad))
    assert result.returncode != 0


def test_dockerfile_passes_hadolint_at_warning_level():
    result = run(tool("hadolint"), "--failure-threshold", "warning", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_dockerfile_with_warnings(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install aiohttp\n")
    result = run(tool("hadolint"), "--failure-threshold", "warning", str(bad))
    assert result.returncode != 0


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_is_multi_stage_on_a_slim_python_base():
    instructions = dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2
    base = dict(
        re.findall(r"^(\w+)=(\S+)$", "\n".join(r for k, r in instructions if k == "ARG"), re.M)
    )
    for image in froms:
        image = image.split()[0]
        image = base.get(image.strip("${}"), image)
        assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", image), image


def test_dockerfile_installs_into_a_venv_without_pip_cache_and_runs_as_numeric_user():
    instructions = dockerfile_instructions()
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "python -m venv /opt/venv" in runs
    assert re.search(r"/opt/venv/bin/pip install --no-cache-dir\b", runs)
    (user,) = [rest for keyword, rest in instructions if keyword == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    (entrypoint,) = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoint == '["/opt/venv/bin/whatsapp-support-exporter"]'
    exposed = [rest for keyword, rest in instructions if keyword == "EXPOSE"]
    assert exposed == [str(EXPORTER_PORT)]


def test_dockerfile_build_steps_install_the_console_script(tmp_path):
    """Replays the build stage: copy what it copies, make the venv, pip install as it does."""
    instructions = dockerfile_instructions()
    first, second = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"][:2]
    build_stage = instructions[first:second]
    context = tmp_path / "src"
    context.mkdir()
    for keyword, rest in build_stage:
        if keyword != "COPY":
            continue
        *sources, _destination = rest.split()
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
            if path.is_dir():
                shutil.copytree(
                    path, context / source, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(path, context / source)
    venv = tmp_path / "venv"
    result = run(sys.executable, "-m", "venv", str(venv))
    assert result.returncode == 0, result.stderr
    # As in the Dockerfile, with --no-deps to keep the test fast (dependencies come from PyPI).
    pip_env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--no-cache-dir",
            "--no-deps",
            "--quiet",
            str(context),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=pip_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    script = venv / "bin" / "whatsapp-support-exporter"
    assert script.is_file() and os.access(script, os.X_OK)
    assert "from exporter.__main__ import main" in script.read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = run(
        str(venv / "bin" / "python"),
        "-c",
        "import importlib.metadata as m; print(m.version('whatsapp-support-exporter'))",
        cwd=tmp_path,
    )
    assert result.stdout.strip() == version
