"""The README is the users' copy of the contract: its tables must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.collector import FAMILIES, METRIC_NAMES
from exporter.settings import FLAGS, Settings

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def table_after(heading: str) -> list[list[str]]:
    """Rows (cells stripped, header and rule skipped) of the first table under a heading."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_metrics_table_lists_exactly_the_collector_metrics_with_types_and_labels() -> None:
    rows = table_after("Metrics")
    documented = {codes(row[0])[0]: (row[1], tuple(codes(row[2]))) for row in rows}
    assert list(documented) == list(METRIC_NAMES)
    for name, (kind, labels) in documented.items():
        family = FAMILIES[name]
        assert kind == family.kind, name
        assert labels == family.labels, name


def test_configuration_table_lists_every_setting_with_its_flag() -> None:
    rows = table_after("Configuration")
    variables = {codes(row[0])[0]: codes(row[1]) for row in rows}
    expected = {f"WA_{name.upper()}" for name in Settings.model_fields}
    assert set(variables) == expected
    for flag, (field, _) in FLAGS.items():
        assert flag in variables[f"WA_{field.upper()}"], flag
    assert variables["WA_TARGETS"] == ["--target"]


def test_ci_runs_the_readme_test_command() -> None:
    readme_command = re.findall(r"```sh\n(.+?)\n```", README)[1]
    assert "pytest" in readme_command
    ci = (ROOT / ".ci" / "run").read_text()
    # every step of the README's command, installs included, happens in CI
    for step in (
        "apt-get update",
        "apt-get install",
        "prometheus",
        "python3 -m venv",
        "pip install -e '.[test]'",
        "python -m pytest -q",
    ):
        assert step in readme_command and step in ci, step


def test_readme_opens_with_the_demo_command() -> None:
    first_command = re.findall(r"```sh\n(.+?)\n```", README)[0]
    assert first_command.endswith("&& whatsapp-support-exporter --demo")
