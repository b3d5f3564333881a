"""The container image: its Dockerfile, health check and release workflow (no Docker engine here).

The build stage's install steps are replayed in a virtual environment, and the HEALTHCHECK
command is run against a local server, so what the image would do is tested without building it.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_tools import EXPORTER_IMAGE, EXPORTER_PORT, ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"
WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
CI = WORKFLOWS / "ci.yml"
RUNTIME_REQUIREMENTS = "requirements/runtime.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The Python versions the suite runs on, as nox and CI read them.
PYTHONS = [
    c.rpartition(" :: ")[2]
    for c in PYPROJECT["project"]["classifiers"]
    if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
]

Instruction = tuple[str, str]


def dockerfile_instructions() -> list[Instruction]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def arguments(instructions: list[Instruction]) -> dict[str, str]:
    found = {}
    for keyword, rest in instructions:
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            found[name] = value
    return found


def only(instructions: list[Instruction], keyword: str) -> list[str]:
    return [rest for k, rest in instructions if k == keyword]


def healthcheck_command() -> list[str]:
    (healthcheck,) = only(dockerfile_instructions(), "HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    parsed: list[str] = json.loads(command)
    return parsed


def oci_labels() -> dict[str, str]:
    (label,) = only(dockerfile_instructions(), "LABEL")
    return dict(word.split("=", 1) for word in shlex.split(label))


class Health(http.server.BaseHTTPRequestHandler):
    """Answers /-/healthy with the status the test sets; anything else is 404."""

    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/-/healthy" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    Health.status = 200


def run_healthcheck(**variables: str) -> int:
    command = healthcheck_command()
    assert command[0] == "python"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WA_")} | variables
    return subprocess.run(
        [sys.executable, *command[1:]], env=environment, capture_output=True, check=False
    ).returncode


# --- lint -----------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint_at_warning_level() -> None:
    result = run(tool("hadolint"), "--failure-threshold", "warning", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_dockerfile_with_warnings(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install aiohttp\n")
    result = run(tool("hadolint"), "--failure-threshold", "warning", str(bad))
    assert result.returncode != 0


# --- the image ------------------------------------------------------------------------------------


def test_base_image_is_an_exact_slim_release_of_a_python_the_tests_run_on() -> None:
    instructions = dockerfile_instructions()
    froms = [rest.split()[0] for rest in only(instructions, "FROM")]
    assert len(froms) == 2, "a build stage and a runtime stage"
    base = arguments(instructions)
    assert PYTHONS, "pyproject.toml names the Python versions the suite runs on"
    for image in froms:
        image = base.get(image.strip("${}"), image)
        found = re.fullmatch(r"python:(3\.\d+)\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image)
        assert found and found[1] in PYTHONS, image


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]}


def runtime_requirements() -> dict[str, tuple[str, list[str]]]:
    """requirements/runtime.txt as {name: (version, hashes)}."""
    text = (ROOT / RUNTIME_REQUIREMENTS).read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            pin = re.match(r"([a-z0-9-]+)==(\S+)", requirement)
            assert pin, f"not an exact pin: {line}"
            found[pin[1]] = (pin[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", requirement))
    return found


def test_image_installs_the_locked_runtime_packages_each_checked_by_hash() -> None:
    instructions = dockerfile_instructions()
    runs = only(instructions, "RUN")
    (locked,) = [r for r in runs if f"-r {RUNTIME_REQUIREMENTS}" in r]
    assert "--require-hashes" in locked.split() and "--no-deps" in locked.split()
    # the exporter goes on top of them and brings nothing else
    (project,) = [r for r in runs if r.endswith(" /src")]
    assert "--no-deps" in project.split()
    assert runs.index(locked) < runs.index(project)
    pins, lock = runtime_requirements(), locked_versions()
    for name, (version, hashes) in pins.items():
        assert lock.get(name) == version, f"{name}=={version} is not the locked version"
        assert hashes, name
    declared = {
        re.split(r"[<>=!~;\[ ]", dependency, maxsplit=1)[0].lower().replace("_", "-")
        for dependency in PYPROJECT["project"]["dependencies"]
    }
    assert declared <= set(pins), "every runtime dependency is in the image's requirements"
    assert {"pytest", "ruff", "mypy", "nox"}.isdisjoint(pins), "no tooling in the image"


def test_image_carries_the_oci_labels() -> None:
    labels = oci_labels()
    for key in ("title", "description", "source", "licenses", "version", "revision", "created"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert (
        labels["org.opencontainers.image.licenses"]
        == (tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"])
    )


def test_dockerfile_installs_into_a_venv_and_runs_as_a_named_non_root_user() -> None:
    instructions = dockerfile_instructions()
    runs = " ".join(only(instructions, "RUN"))
    assert "python -m venv /opt/venv" in runs
    assert re.search(r"/opt/venv/bin/pip install --no-cache-dir\b", runs)
    (user,) = only(instructions, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    assert re.search(rf"useradd\b[^&]*--uid {uid}\b[^&]*--gid {gid}\b", runs)
    (entrypoint,) = only(instructions, "ENTRYPOINT")
    assert entrypoint == '["/opt/venv/bin/whatsapp-support-exporter"]'
    assert only(instructions, "EXPOSE") == [str(EXPORTER_PORT)]


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for rest in only(dockerfile_instructions(), "COPY"):
        if rest.startswith("--from="):
            continue
        *sources, _ = rest.split()
        assert {s.rstrip("/") for s in sources} <= allowed


def test_healthcheck_passes_while_the_exporter_answers_healthy(
    health_server: http.server.HTTPServer,
) -> None:
    port = health_server.server_address[1]
    assert run_healthcheck(WA_WEB_LISTEN_ADDRESS=f":{port}") == 0
    assert run_healthcheck(WA_LISTEN_ADDRESS=f"0.0.0.0:{port}") == 0


def test_healthcheck_fails_when_the_exporter_is_unhealthy_or_gone(
    health_server: http.server.HTTPServer,
) -> None:
    port = health_server.server_address[1]
    Health.status = 503
    assert run_healthcheck(WA_WEB_LISTEN_ADDRESS=f":{port}") != 0
    health_server.shutdown()
    health_server.server_close()
    assert run_healthcheck(WA_WEB_LISTEN_ADDRESS=f":{port}") != 0


def test_healthcheck_defaults_to_the_exporters_port() -> None:
    (script,) = [arg for arg in healthcheck_command() if "urlopen" in arg]
    assert f"':{EXPORTER_PORT}'" in script and "/-/healthy" in script


def runtime_environment() -> dict[str, str]:
    """The ENV of the image's last stage."""
    instructions = dockerfile_instructions()
    last = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    found: dict[str, str] = {}
    for rest in only(instructions[last:], "ENV"):
        for word in shlex.split(rest):
            name, _, value = word.partition("=")
            found[name] = value
    return found


def test_image_listens_on_every_interface_so_a_published_port_reaches_it() -> None:
    address = runtime_environment()["WA_WEB_LISTEN_ADDRESS"]
    host, _, port = address.rpartition(":")
    assert host == "" and port == str(EXPORTER_PORT)  # no host: every interface


@pytest.mark.parametrize(
    ("image", "expected"), [(True, f":{EXPORTER_PORT}"), (False, f"127.0.0.1:{EXPORTER_PORT}")]
)
async def test_the_demo_listens_where_the_image_says_and_on_loopback_elsewhere(
    monkeypatch: pytest.MonkeyPatch, image: bool, expected: str
) -> None:
    """`docker run -p 10042:10042 IMAGE --demo` must be reachable: the image's listen address
    wins over the demo's loopback default, which stays for a demo on a workstation."""
    from whatsapp_support_exporter.cli.main import start_demo_simulator
    from whatsapp_support_exporter.cli.settings import load_settings

    for name in [n for n in os.environ if n.startswith("WA_")]:
        monkeypatch.delenv(name)
    if image:
        monkeypatch.setenv("WA_WEB_LISTEN_ADDRESS", runtime_environment()["WA_WEB_LISTEN_ADDRESS"])
    settings, _targets, runner = await start_demo_simulator(load_settings(["--demo"]))
    try:
        assert settings.listen_address == expected
    finally:
        await runner.cleanup()


def test_dockerfile_build_steps_install_the_console_script(tmp_path: Path) -> None:
    """Replays the build stage: copy what it copies, make the venv, pip install as it does."""
    instructions = dockerfile_instructions()
    first, second = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"][:2]
    context = tmp_path / "src"
    context.mkdir()
    for rest in only(instructions[first:second], "COPY"):
        *sources, _destination = rest.split()
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(
                    path, context / source, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(path, context / source)
    venv = tmp_path / "venv"
    # The Dockerfile's own commands, on a temporary venv and context; all but the locked
    # requirements (a download of every runtime package, checked above against the lock).
    runs = [r for r in only(instructions[first:second], "RUN") if "requirements/" not in r]
    assert runs[0] == "python -m venv /opt/venv"
    result = run(sys.executable, "-m", "venv", str(venv))
    assert result.returncode == 0, result.stderr
    (install,) = runs[1:]
    command = shlex.split(install.replace("/opt/venv", str(venv)).replace("/src", str(context)))
    result = subprocess.run(
        [*command, "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    script = venv / "bin" / "whatsapp-support-exporter"
    assert script.is_file() and os.access(script, os.X_OK)
    assert "from whatsapp_support_exporter.cli.main import main" in script.read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = run(
        str(venv / "bin" / "python"),
        "-c",
        "import importlib.metadata as m; print(m.version('whatsapp-support-exporter'))",
        cwd=tmp_path,
    )
    assert result.stdout.strip() == version


# --- the release workflow -------------------------------------------------------------------------


def workflow(path: Path) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(path.read_text())
    return loaded


def release_steps() -> dict[str, dict[str, Any]]:
    return {
        step["uses"].split("@")[0]: step for step in workflow(RELEASE)["jobs"]["image"]["steps"]
    }


def test_release_workflow_runs_on_version_tags_only() -> None:
    release = workflow(RELEASE)
    # PyYAML reads the key `on` as True.
    assert release[True] == {"push": {"tags": ["v*.*.*"]}}
    assert release["jobs"]["image"]["permissions"] == {"contents": "read", "packages": "write"}


def test_release_builds_the_image_only_after_the_whole_ci_passed() -> None:
    jobs = workflow(RELEASE)["jobs"]
    assert set(jobs) == {"ci", "image"}
    assert jobs["ci"] == {"uses": "./.github/workflows/ci.yml"}
    assert jobs["image"]["needs"] == "ci"
    assert "workflow_call" in workflow(CI)[True]


def test_ci_runs_nox_on_pushes_and_pull_requests_on_every_supported_python() -> None:
    ci = workflow(CI)
    assert {"push", "pull_request"} <= set(ci[True])
    assert ci["permissions"] == {"contents": "read"}
    tests = ci["jobs"]["tests"]
    assert tests["strategy"]["matrix"]["python"] == PYTHONS
    commands = [step.get("run", "") for step in tests["steps"]]
    assert any("uv sync --locked --extra test" in c for c in commands)
    assert any("apt-get install" in c and "prometheus" in c for c in commands)
    assert commands[-1] == ".venv/bin/nox -s tests-${{ matrix.python }}"
    checks = [step.get("run", "") for step in ci["jobs"]["checks"]["steps"]]
    assert checks[-1] == ".venv/bin/nox -s lint types"


def test_release_workflow_pushes_the_image_to_the_projects_registry() -> None:
    steps = release_steps()
    assert steps["docker/login-action"]["with"]["registry"] == "ghcr.io"
    image = steps["docker/metadata-action"]["with"]["images"]
    assert image == "ghcr.io/${{ github.repository_owner }}/whatsapp-support-exporter"
    # The manifests pull the same repository name.
    assert EXPORTER_IMAGE.rsplit("/", 1)[1] == image.rsplit("/", 1)[1]
    build = steps["docker/build-push-action"]["with"]
    assert build["push"] is True and build["context"] == "."
    assert build["tags"] == "${{ steps.meta.outputs.tags }}"
    args = dict(line.split("=", 1) for line in build["build-args"].splitlines())
    assert (
        set(args) == {"VERSION", "REVISION", "CREATED"} <= set(arguments(dockerfile_instructions()))
    )


def test_workflows_pin_every_action_to_a_major_version() -> None:
    for path in (RELEASE, CI):
        for job in workflow(path)["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    assert re.fullmatch(r"v\d+", step["uses"].split("@")[1]), step["uses"]


def test_workflows_pass_yamllint_strict() -> None:
    result = run(tool("yamllint"), "-s", "-c", str(ROOT / ".yamllint.yaml"), str(RELEASE), str(CI))
    assert result.returncode == 0, result.stdout + result.stderr
