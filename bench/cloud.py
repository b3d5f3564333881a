#!/usr/bin/env python3
"""What watching Cloud API accounts costs: 1,000 accounts of 10 numbers at the default interval.

    python bench/cloud.py --accounts 1000 --numbers 10 --window 600

Starts the simulated Graph API (``python -m whatsapp_api_simulator --graph-accounts N``) and
the exporter with only ``WA_CLOUD_*`` settings (no On-Premises target, ``--cloud.interval`` at
its default of 5 minutes unless ``--interval``), waits until every account is up, then measures
over ``--window`` seconds while a scraper fetches ``/metrics`` (gzip) every 30 s as Prometheus
would: the exporter's CPU (cores), RSS and peak RSS, the polls made and the Graph API requests
per account and hour (2 per poll for one page of numbers). Prints a Markdown table for
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
UP = re.compile(rb'^whatsapp_cloud_up\{account="[^"]*"\} 1$', re.M)
POLLS = re.compile(rb"^whatsapp_exporter_cloud_polls_total\{[^}]*\} (\S+)$", re.M)
ERRORS = re.compile(rb"^whatsapp_exporter_cloud_poll_errors_total\{[^}]*\} (\S+)$", re.M)
SCRAPE_EVERY = 30.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int, gzip: bool = False) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as resp:
        return bytes(resp.read())


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def totals(body: bytes) -> tuple[float, float]:
    return (
        sum(float(v) for v in POLLS.findall(body)),
        sum(float(v) for v in ERRORS.findall(body)),
    )


class Scraper(threading.Thread):
    """Fetches /metrics (gzip) every 30 s, as a Prometheus would, until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.done = threading.Event()
        self.scrapes = 0

    def run(self) -> None:
        while not self.done.wait(SCRAPE_EVERY):
            scrape(self.port, gzip=True)
            self.scrapes += 1


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--numbers", type=int, default=10)
    parser.add_argument("--window", type=float, default=600.0)
    parser.add_argument("--interval", default=None, help="--cloud.interval (default: 5m)")
    args = parser.parse_args()
    token = secrets.token_urlsafe(16)
    sim = subprocess.Popen(
        [
            PYTHON, "-m", "whatsapp_api_simulator", "--listen", "127.0.0.1:0",
            "--graph-accounts", str(args.accounts), "--graph-numbers", str(args.numbers),
            "--graph-token", token, "--graph-rate-limit", "1000000",
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    exporter: subprocess.Popen[bytes] | None = None
    try:
        assert sim.stdout is not None
        settings = {}
        while len(settings) < 3:
            line = sim.stdout.readline().decode().strip()
            name, sep, value = line.partition("=")
            if sep and name.startswith("WA_CLOUD_"):
                settings[name] = value
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
        env.update(settings)
        env["WA_LOG_LEVEL"] = "warn"
        if args.interval:
            env["WA_CLOUD_INTERVAL"] = args.interval
        started = time.monotonic()
        exporter = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "whatsapp_support_exporter",
                "--web.listen-address",
                f"127.0.0.1:{port}",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        proc = psutil.Process(exporter.pid)
        while True:
            try:
                body = scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            if len(UP.findall(body)) >= args.accounts:
                break
            if time.monotonic() - started > 300:
                raise SystemExit("not every account up within 300 s")
            time.sleep(1.0)
        all_up = time.monotonic() - started
        size, lines = len(body), body.count(b"\n")
        polls0, errors0 = totals(body)
        cpu0, t0 = cpu(proc), time.monotonic()
        scraper = Scraper(port)
        scraper.start()
        time.sleep(args.window)
        scraper.done.set()
        scraper.join()
        cpu1, t1 = cpu(proc), time.monotonic()
        body = scrape(port)
        polls1, errors1 = totals(body)
        rss = proc.memory_info().rss / 2**20
        peak = peak_rss_mib(exporter.pid)
        hours = (t1 - t0) / 3600
        polls = polls1 - polls0
        load = os.getloadavg()
        print(f"| accounts x numbers | {args.accounts} x {args.numbers} |")
        print("|---|---|")
        print(f"| interval | {args.interval or '5m (default)'} |")
        print(f"| window | {t1 - t0:.0f} s, {scraper.scrapes} scrapes (gzip) |")
        print(f"| all accounts up after | {all_up:.1f} s |")
        print(f"| CPU | {(cpu1 - cpu0) / (t1 - t0):.4f} cores ({cpu1 - cpu0:.1f} s) |")
        print(f"| CPU per poll | {(cpu1 - cpu0) / max(polls, 1) * 1000:.2f} ms |")
        print(f"| RSS / peak RSS | {rss:.0f} MiB / {peak:.0f} MiB |")
        print(f"| /metrics body | {size / 2**20:.1f} MiB, {lines} lines |")
        print(f"| polls (failed) | {polls:.0f} ({errors1 - errors0:.0f}) |")
        print(f"| Graph requests per account and hour | {2 * polls / args.accounts / hours:.1f} |")
        print(f"| load average (1, 5, 15 min) | {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} |")
    finally:
        if exporter is not None:
            stop(exporter)
        stop(sim)


if __name__ == "__main__":
    main()
