"""`whatsapp-api-simulator` (`python -m whatsapp_api_simulator`): arguments, targets, stopping."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import orjson
import pytest

from tests.conftest import SIM_APIKEY, SIM_KEY
from whatsapp_api_simulator.cli import build_parser, main

# --------------------------------------------------------------------------- command line


def test_main_rejects_bad_arguments_with_exit_code_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--listen", "nonsense"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--multiconnect", "1", "--shards", "3", "--coreapps", "4"])
    assert exc.value.code == 2


def test_default_listen_address_is_loopback_port_10043_not_prometheus_9090() -> None:
    assert build_parser().parse_args([]).listen == ("127.0.0.1", 10043)


def test_taken_port_prints_one_line_naming_the_address_and_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "whatsapp_api_simulator", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert proc.stdout == ""  # no target line for a server that does not exist
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in proc.stderr


def test_module_prints_targets_with_the_bound_port_serves_them_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "whatsapp_api_simulator",
            "--listen",
            "127.0.0.1:0",
            "--single",
            "2",
            "--multiconnect",
            "1",
            "--shards",
            "2",
            "--ha",
            "1",
            "--api-key",
            SIM_KEY,
            "--failover-every",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        targets = dict(part.split("=", 1) for part in line.split(","))
        assert list(targets) == ["single-0", "single-1", "ha-0", "mc-0"]
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/single-0", targets["single-0"])
        assert match and int(match.group(1)) > 0

        def primary() -> str:
            request = urllib.request.Request(f"{targets['ha-0']}/v1/support", headers=SIM_APIKEY)
            with urllib.request.urlopen(request, timeout=5) as resp:
                support: dict[str, dict[str, Any]] = orjson.loads(resp.read())["support"]
            return next(k for k, c in support.items() if c["role"] == "primary_master")

        first = primary()
        deadline = time.monotonic() + 5
        while primary() == first:  # --failover-every moves the lease on the real clock
            assert time.monotonic() < deadline, "no failover happened"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
