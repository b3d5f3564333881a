"""Every YAML file of the repository passes yamllint in strict mode (warnings fail too)."""

from __future__ import annotations

from pathlib import Path

from tests.deploy_tools import ROOT, run, tool

CONFIG = ROOT / ".yamllint.yaml"


def test_all_yaml_passes_yamllint_strict() -> None:
    result = run(tool("yamllint"), "-s", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_lints_the_workflows_and_the_kustomize_kits() -> None:
    result = run(tool("yamllint"), "--list-files", ".")
    listed = set(result.stdout.split())
    assert "./.github/workflows/release.yml" in listed
    assert "./deploy/kubernetes/sidecar/exporter-container.yaml" in listed
    assert "./deploy/kubernetes/central/config.yml" in listed


def test_yamllint_config_still_catches_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("key: value\nkey: other\n")
    result = run(tool("yamllint"), "-s", "-c", str(CONFIG), str(bad))
    assert result.returncode != 0
