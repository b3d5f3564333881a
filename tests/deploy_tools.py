"""Command-line tools the deployment tests drive (kubectl, promtool, yamllint, hadolint)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
PROMETHEUS = ROOT / "deploy" / "prometheus"
EXPORTER_IMAGE = "ghcr.io/whatsapp-support-exporter/whatsapp-support-exporter"
EXPORTER_PORT = 10042


def tool(name: str) -> str:
    """A tool from this interpreter's virtual environment (kubectl, hadolint and yamllint are
    locked test dependencies: not whatever else PATH holds), else from PATH (promtool comes with
    Debian's prometheus); missing fails the test."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed")
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False, cwd=cwd)
