"""The demo as a newcomer uses it: it prints its fleet as a configuration file, with fixed and
documented credentials, and ``check`` given that file answers from the running demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port, wait_until
from whatsapp_support_exporter.cli import main

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = (
    main.DEMO_CLUSTER_API_KEY,
    main.DEMO_SINGLE_API_KEY,
    main.DEMO_PASSWORD,
    main.DEMO_CLOUD_TOKEN,
)


class Demo:
    """``whatsapp-support-exporter --demo`` in a subprocess, its stderr collected as it comes."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "whatsapp_support_exporter",
                "--demo",
                "--web.listen-address",
                f"127.0.0.1:{free_port()}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        stream = self.proc.stderr
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True
        )
        self._reader.start()

    def printed_config(self) -> str:
        """The configuration block the demo prints at start, from its first line to its last."""

        def block() -> str | None:
            lines = list(self.lines)
            starts = [i for i, line in enumerate(lines) if line.startswith("# The demo's")]
            ends = [i for i, line in enumerate(lines) if "auth: single-login}" in line]
            if self.proc.poll() is not None:
                raise AssertionError("".join(lines))
            return "".join(lines[starts[0] : ends[0] + 1]) if starts and ends else None

        return wait_until(block, what="the demo's configuration")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def demo() -> Iterator[Demo]:
    running = Demo()
    try:
        yield running
    finally:
        running.stop()


def test_check_given_the_configuration_the_demo_prints_polls_the_demos_simulator(
    demo: Demo, tmp_path: Path
) -> None:
    config = demo.printed_config()
    assert {t["name"] for t in yaml.safe_load(config)["targets"]} == {"cluster", "single"}
    path = tmp_path / "demo.yml"
    path.write_text(config)  # saved as printed, comments and all
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_") and k != "NO_COLOR"}
    done = subprocess.run(
        [sys.executable, "-m", "whatsapp_support_exporter", "check", "--config.file", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = done.stdout.splitlines()
    assert len([r for r in rows if r.startswith("cluster ")]) == 6  # 2 Masters, 4 Coreapps
    assert len([r for r in rows if r.startswith("single ")]) == 1
    assert "2 of 2 targets answered." in rows
    assert len([r for r in rows if r.startswith("demo ")]) == 1  # the Cloud API account
    assert rows[-1] == "1 of 1 accounts answered."


def test_the_demo_credentials_are_documented() -> None:
    doc = (ROOT / "docs" / "simulator.md").read_text()
    for credential in (*CREDENTIALS, main.DEMO_USERNAME):
        assert f"`{credential}`" in doc
