"""The other ways the On-Premises client is run: docker compose beside the Webapp, a systemd unit.

No Docker engine here: the compose file is parsed and checked as Compose would resolve it
(services, secrets, variables). The unit passes `systemd-analyze verify` and an offline
`systemd-analyze security` where systemd-analyze is installed; without it, the unit's keys are
parsed and checked only (the key checks run in both cases).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tests.deploy_tools import EXPORTER_IMAGE, EXPORTER_PORT, KUBERNETES, ROOT, run
from whatsapp_support_exporter.fleet.options import KNOWN_VARIABLES

COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
UNIT = ROOT / "deploy" / "systemd" / "whatsapp-support-exporter.service"
EXPORTER_SERVICE = "whatsapp-support-exporter"


def compose() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def exporter_service() -> dict[str, object]:
    services = compose()["services"]
    assert isinstance(services, dict)
    found: dict[str, object] = services[EXPORTER_SERVICE]
    return found


def kit_image() -> str:
    """The image the Kubernetes kits pin."""
    text = (KUBERNETES / "central" / "deployment.yaml").read_text()
    (image,) = re.findall(rf"image: ({re.escape(EXPORTER_IMAGE)}:\S+)", text)
    return str(image)


# --- docker compose -------------------------------------------------------------------------------


def test_compose_file_parses_and_runs_the_exporters_image_as_the_kits_pin_it() -> None:
    assert exporter_service()["image"] == kit_image()
    assert exporter_service()["ports"] == [f"{EXPORTER_PORT}:{EXPORTER_PORT}"]


def test_compose_exporter_polls_the_webapp_service_of_the_same_file() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    environment = exporter_service()["environment"]
    assert isinstance(environment, dict)
    (target,) = str(environment["WA_TARGETS"]).split(",")
    name, _, url = target.partition("=")
    host = urlsplit(url).hostname
    assert name and host in services and host != EXPORTER_SERVICE
    assert exporter_service()["depends_on"] == [host]


def test_compose_sets_only_variables_the_exporter_knows_and_secrets_as_files() -> None:
    environment = exporter_service()["environment"]
    assert isinstance(environment, dict)
    assert set(environment) <= KNOWN_VARIABLES
    assert not set(environment) & {"WA_API_KEY", "WA_PASSWORD", "WA_CLOUD_TOKEN"}
    secrets = compose()["secrets"]
    assert isinstance(secrets, dict)
    assert exporter_service()["secrets"] == list(secrets)
    for name, secret in secrets.items():
        assert set(secret) == {"file"}, name
    assert environment["WA_API_KEY_FILE"] == f"/run/secrets/{next(iter(secrets))}"


def test_compose_names_the_cloud_api_settings_to_turn_on() -> None:
    commented = [line.strip() for line in COMPOSE.read_text().splitlines() if "# WA_" in line]
    names = {line.removeprefix("# ").split(":")[0] for line in commented}
    assert {"WA_CLOUD_WABA_IDS", "WA_CLOUD_TOKEN_FILE", "WA_USERNAME", "WA_PASSWORD_FILE"} <= names


def test_compose_exporter_is_locked_down() -> None:
    service = exporter_service()
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    assert service["tmpfs"] == ["/tmp"]


# --- systemd --------------------------------------------------------------------------------------


def unit_keys(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (a key may repeat), as systemd reads a unit file."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a key outside any section: {line}"
        key, equals, value = line.partition("=")
        assert equals, f"not a key=value line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


HARDENING = {
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}


def test_unit_starts_the_console_script_with_secrets_as_credentials() -> None:
    unit = unit_keys(UNIT.read_text())
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    (exec_start,) = service["ExecStart"]
    assert exec_start.split()[0].endswith("/bin/whatsapp-support-exporter")
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["RestartPreventExitStatus"] == ["2"]  # bad settings: a restart fixes nothing
    # The key is a credential (%d, readable by this service only), never a variable's value.
    (credential,) = service["LoadCredential"]
    name, _, _ = credential.partition(":")
    assert f"WA_API_KEY_FILE=%d/{name}" in service["Environment"]
    variables = {e.partition("=")[0] for e in service["Environment"]}
    assert variables <= KNOWN_VARIABLES
    assert not variables & {"WA_API_KEY", "WA_PASSWORD", "WA_CLOUD_TOKEN"}
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_is_hardened() -> None:
    service = unit_keys(UNIT.read_text())["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert "@system-service" in service["SystemCallFilter"]


def verify(unit: Path, tmp_path: Path) -> tuple[int, str]:
    """`systemd-analyze verify` of ``unit`` with ExecStart at this environment's console script
    (verify insists that the program exists)."""
    script = Path(sys.executable).parent / "whatsapp-support-exporter"
    assert script.exists()
    target = tmp_path / UNIT.name
    target.write_text(
        unit.read_text().replace("/opt/whatsapp-support-exporter/bin/", f"{script.parent}/")
    )
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    result = run(analyze, "verify", str(target))
    return result.returncode, result.stdout + result.stderr


def test_unit_passes_systemd_analyze_verify_and_an_offline_security_review(
    tmp_path: Path,
) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # no systemd here: the key checks above are what remains
        assert unit_keys(UNIT.read_text())["Service"]["ExecStart"]
        return
    code, output = verify(UNIT, tmp_path)
    assert (code, output) == (0, "")
    # The exposure systemd computes from the sandboxing (0 best, 10 worst; the threshold counts
    # tenths): 1.3 when written, at most 2 allowed.
    result = run(analyze, "security", "--offline=true", "--threshold=20", str(tmp_path / UNIT.name))
    assert result.returncode == 0, result.stdout[-2000:]


def test_systemd_analyze_verify_reports_a_mistyped_key(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:  # the parser catches what it can instead
        text = UNIT.read_text().replace("ProtectSystem=", "ProtectSytem=")
        assert "ProtectSystem" not in unit_keys(text)["Service"]
        return
    mistyped = tmp_path / "mistyped" / UNIT.name
    mistyped.parent.mkdir()
    mistyped.write_text(UNIT.read_text().replace("ProtectSystem=", "ProtectSytem="))
    _, output = verify(mistyped, tmp_path)
    assert "Unknown key" in output and "ProtectSytem" in output
