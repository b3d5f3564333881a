"""The simulator and the exporter as their own processes, measured from outside.

What every benchmark shares: starting both on loopback (`start_simulator`, `start_exporter`),
waiting for them, a keep-alive HTTP client that scrapes as Prometheus does, CPU time and peak
memory of a process. `run.py` (the suite) and the other benchmarks take these from here.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
API_KEY = "bench-api-key-0123456789"
PROM_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROM_HEADERS = {"Accept": PROM_ACCEPT, "Accept-Encoding": "gzip", "User-Agent": "Prometheus/2.53"}
POLLS_RE = re.compile(rb"^whatsapp_exporter_polls_total\{[^}]*\} (\S+)$", re.M)
ERRORS_RE = re.compile(rb"^whatsapp_exporter_poll_errors_total\{[^}]*\} (\S+)$", re.M)
UP_RE = re.compile(rb"^whatsapp_up\{[^}]*\} 1$", re.M)


@dataclass
class Case:
    """One benchmark case: the fleet the simulator serves, the poll interval, the windows."""

    name: str
    label: str
    singles: int = 0
    multiconnect: int = 0
    containers: int = 0
    interval: float = 30.0
    window: float = 20.0
    latency_requests: int = 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.01)
    raise RuntimeError(f"nothing listens on port {port}")


class Http:
    """One keep-alive connection, like a Prometheus scraper's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, headers: dict[str, str], path: str = "/metrics") -> tuple[bytes, dict[str, str]]:
        for attempt in range(2):
            try:
                self.conn.request("GET", path, headers=headers)
                resp = self.conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {path}: HTTP {resp.status}")
                return body, {k.lower(): v for k, v in resp.getheaders()}
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def plain(body: bytes, headers: dict[str, str]) -> bytes:
    return gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body


def total(regex: re.Pattern[bytes], text: bytes) -> float:
    return sum(float(v) for v in regex.findall(text))


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median": statistics.median(ordered),
        "p99": p99,
        "max": ordered[-1],
        "n": float(len(ordered)),
    }


def timed_gets(port: int, n: int, headers: dict[str, str]) -> list[float]:
    client = Http(port)
    client.get(headers)  # connect and warm up
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.get(headers)
        samples.append((time.perf_counter() - start) * 1000)
    client.close()
    return samples


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_simulator(case: Case) -> tuple[subprocess.Popen[str], list[str]]:
    port = free_port()
    cmd = [
        PYTHON, "-m", "whatsapp_api_simulator", "--listen", f"127.0.0.1:{port}",
        "--single", str(case.singles), "--multiconnect", str(case.multiconnect),
        "--masters", "2", "--coreapps", "3", "--shards", "2",
        "--api-key", API_KEY, "--rate", "100000", "--burst", "100000",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    wait_port(port)
    return proc, [t for t in line.split(",") if t]


# 0.2 asks the optional endpoints too; without them it makes the requests 0.1 made, so the figures
# stay comparable
REQUESTS_OF_0_1 = ("--no-collector.health", "--no-collector.shards")


def start_exporter(
    targets: list[str],
    interval: float,
    port: int,
    log: Path,
    *,
    root: Path = ROOT,
    program: tuple[str, ...] = ("-m", "whatsapp_support_exporter"),
    args: tuple[str, ...] = REQUESTS_OF_0_1,
) -> tuple[subprocess.Popen[bytes], float]:
    """The exporter of the tree at ``root`` (run from there: ``-m whatsapp_support_exporter`` imports its package)."""
    cmd = [
        PYTHON, *program, "--web.listen-address", f"127.0.0.1:{port}",
        "--poll.interval", f"{interval:g}", *args,
    ]  # fmt: skip
    for target in targets:
        cmd += ["--target", target]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_") and k != "PYTHONPATH"}
    env.update({"WA_API_KEY": API_KEY, "WA_LOG_LEVEL": "warn"})
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    return proc, started


def wait_up(port: int, started: float, targets: int, timeout: float) -> tuple[float, float]:
    """Seconds from start to the first target up, and to all targets up."""
    first = 0.0
    deadline = started + timeout
    client: Http | None = None
    while time.monotonic() < deadline:
        try:
            if client is None:
                client = Http(port)
            body, _ = client.get({"Accept": "text/plain"})
        except OSError:
            client = None
            time.sleep(0.005)
            continue
        up = len(UP_RE.findall(body))
        now = time.monotonic() - started
        if up and not first:
            first = now
        if up >= targets:
            return first, now
        time.sleep(0.005 if targets < 100 else 0.1)
    raise RuntimeError(f"not all {targets} targets up within {timeout}s")


class Scraper(threading.Thread):
    """A Prometheus: one scrape per second with its headers, latencies kept."""

    def __init__(self, port: int, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.every = every
        self.halt = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        client = Http(self.port)
        while not self.halt.wait(self.every):
            start = time.perf_counter()
            client.get(PROM_HEADERS)
            self.latencies.append((time.perf_counter() - start) * 1000)
        client.close()


def polls_and_errors(client: Http) -> tuple[float, float]:
    body, headers = client.get(PROM_HEADERS)
    text = plain(body, headers)
    return total(POLLS_RE, text), total(ERRORS_RE, text)
