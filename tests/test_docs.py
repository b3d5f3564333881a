"""The README is the users' copy of the contract: its tables must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from whatsapp_support_exporter.fleet.options import OPTIONS
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.output.families import FAMILIES, METRIC_NAMES

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def table_after(heading: str) -> list[list[str]]:
    """Rows (cells stripped, header and rule skipped) of the first table under a heading."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_metrics_table_lists_exactly_the_metric_table_families_with_types_and_labels() -> None:
    rows = table_after("Metrics")
    documented = {codes(row[0])[0]: (row[1], tuple(codes(row[2]))) for row in rows}
    assert list(documented) == list(METRIC_NAMES)
    for name, (kind, labels) in documented.items():
        family = FAMILIES[name]
        assert kind == family.kind, name
        assert labels == family.labels, name


def test_configuration_table_lists_every_setting_with_its_flag() -> None:
    rows = table_after("Configuration")
    variables = {codes(row[0])[0]: (codes(row[1]), codes(row[2])) for row in rows}
    assert set(OPTIONS) == set(Settings.model_fields)
    assert set(variables) == {option.variable for option in OPTIONS.values()}
    for option in OPTIONS.values():
        aliases, flags = variables[option.variable]
        assert set(aliases) == set(option.variables[1:]), option.field
        if option.flag is not None:
            assert option.flag in flags, option.flag
    assert variables["WA_TARGETS"][1] == ["--target"]


def test_ci_runs_the_readme_test_command() -> None:
    readme_command = re.findall(r"```sh\n(.+?)\n```", README)[1]
    assert readme_command.endswith("&& nox")
    ci = (ROOT / ".ci" / "run").read_text()
    # every step of the README's command, installs included, happens in CI
    for step in (
        "apt-get update",
        "apt-get install",
        "prometheus",
        "python3-venv",
        "python3 -m venv",
        "pip install uv",
        "uv sync --locked --extra test",
        "nox",
    ):
        assert step in readme_command and step in ci, step
    # the locked packages, and nothing from pip's own resolution of the ranges
    assert "pip install -e" not in ci and ci.rstrip().endswith("\nnox")


def test_readme_opens_with_the_demo_command() -> None:
    first_command = re.findall(r"```sh\n(.+?)\n```", README)[0]
    assert first_command.endswith("&& whatsapp-support-exporter --demo")
