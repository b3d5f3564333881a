"""A demo fleet on loopback: a simulator with failovers, three exporters and a real Prometheus."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from prometheus_api import Prometheus

ROOT = Path(__file__).resolve().parent.parent
JOB = "whatsapp-support-exporter"
PASSWORD = "render-password-0123456789"  # noqa: S105 - the simulator's, made up here


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    stack: ExitStack, argv: list[str], env: dict[str, str], **kw: Any
) -> subprocess.Popen[str]:
    process = subprocess.Popen(argv, env=env, text=True, cwd=ROOT, **kw)  # noqa: S603

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)
    return process


@contextmanager
def demo_fleet(failover_every: float) -> Iterator[str]:
    """A simulator, three exporters and a Prometheus on loopback; yields Prometheus' API URL."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit(
            "render_dashboard: prometheus is not installed (Debian package prometheus)"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        sim = spawn(
            stack,
            [
                sys.executable,
                "-m",
                "whatsapp_api_simulator",
                "--listen",
                "127.0.0.1:0",
                "--single",
                "1",
                "--multiconnect",
                "1",
                "--coreapps",
                "4",
                "--shards",
                "4",
                "--password",
                PASSWORD,
                "--failover-every",
                f"{failover_every:g}",
            ],
            env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert sim.stdout is not None
        ready, _, _ = select.select([sim.stdout], [], [], 15)
        if not ready:
            raise SystemExit("render_dashboard: the simulator did not start")
        urls = dict(item.split("=", 1) for item in sim.stdout.readline().strip().split(","))
        shared = {
            **env,
            "WA_TARGETS": f"cluster={urls['mc-0']},single={urls['single-0']}",
            "WA_USERNAME": "admin",
            "WA_PASSWORD": PASSWORD,
        }
        instances = []
        for extra, exporter_env in ((["--demo"], env), ([], shared), ([], shared)):
            port = free_port()
            instances.append(f"127.0.0.1:{port}")
            spawn(
                stack,
                [
                    sys.executable,
                    "-m",
                    "whatsapp_support_exporter",
                    "--web.listen-address",
                    f"127.0.0.1:{port}",
                    "--poll.interval",
                    "1",
                    *extra,
                ],
                exporter_env,
                **quiet,
            )
        port = free_port()
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": JOB, "static_configs": [{"targets": instances}]}
                    ],
                }
            )
        )
        spawn(
            stack,
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            env,
            **quiet,
        )
        yield f"http://127.0.0.1:{port}/api/v1"


def wait_for_data(prom: Prometheus, within: float) -> float:
    """Wait until every exporter's targets are scraped; the time the first sample came."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if len(prom.instant("whatsapp_up == 1", time.time())) >= 6:
                return time.time()
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("render_dashboard: no data from the exporters")
