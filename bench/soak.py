#!/usr/bin/env python3
"""Soak: a fleet that changes for months, compressed into minutes, must keep a flat footprint.

    python bench/soak.py                 # about 4 minutes; rewrites its section of docs/benchmarks.md
    python bench/soak.py --duration 120  # shorter

Time is compressed: polls every 10 s instead of 30, a reload every 15 s (the "minute") that
renames a tenth of the 3,000 targets (a generator of target files following clients as they come
and go does exactly that), a twentieth of the upstreams flapping between faults every 5 s (503
with Retry-After, 429, 500, hangs past the poll timeout, invalid JSON, bodies over the cap, slow
answers, and well again), and hostile clients on the exporter's endpoint, all on 127.0.0.1 and
bounded: slow readers of the uncompressed body, half-open connections that never finish their
request, and a flood of small and malformed requests. A Prometheus-like scraper GETs /metrics
every 2 s meanwhile.

Measured from outside every 2 s (psutil): resident memory, descriptors, threads; from inside (the
exporter runs under a small wrapper that adds one monitoring task): the event loop's tasks and its
lag (how late a 50 ms sleep wakes up, sampled 20 times a second). The RSS slope is a least-squares
fit over the warm part of the run (after the first third).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import (  # noqa: E402  (bench/ is not a package)
    API_KEY,
    PROM_HEADERS,
    UP_RE,
    Http,
    free_port,
    machine,
    plain,
    stop,
    wait_port,
    write_section,
)

PYTHON = sys.executable
RELOAD_OK_RE = re.compile(rb"^whatsapp_exporter_config_last_reload_successful (\S+)$", re.M)
TARGET_RE = re.compile(rb'^whatsapp_exporter_polls_total\{target="([^"]+)"\}', re.M)

# The exporter with one more task: every 50 ms a sleep measures how late the loop wakes up, and
# every second a line (tasks, the second's lags) goes to the file named by SOAK_MONITOR.
MONITORED = (
    "-c",
    """
import asyncio, json, os, sys, time
import whatsapp_support_exporter.cli.main as m

serve = m.serve


async def monitor(path):
    loop = asyncio.get_running_loop()
    lags, flushed = [], loop.time()
    with open(path, "a") as out:
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            lags.append(loop.time() - before - 0.05)
            if loop.time() - flushed >= 1.0:
                line = {"t": time.time(), "tasks": len(asyncio.all_tasks()), "lags": lags}
                out.write(json.dumps(line) + "\\n")
                out.flush()
                lags, flushed = [], loop.time()


async def monitored(*args):
    task = asyncio.create_task(monitor(os.environ["SOAK_MONITOR"]))
    try:
        await serve(*args)
    finally:
        task.cancel()


m.serve = monitored
sys.argv[0] = "exporter"
m.main()
""",
)


# --------------------------------------------------------------------------- the simulator


def run_simulator(port: int, instances: int, flap_every: float) -> None:
    """The upstreams: ``instances`` single instances; every twentieth flaps between faults."""
    import uvloop
    from aiohttp import web

    from whatsapp_api_simulator.onprem import Faults, Simulator

    sim = Simulator(api_key=API_KEY, rate=1e9, burst=10**9)
    for i in range(instances):
        sim.add_instance(f"i{i}", "single")
    flapping = [sim.instance(f"i{i}") for i in range(0, instances, 20)]
    states = [
        Faults(status=503, retry_after="3"),
        Faults(),
        Faults(status=429, retry_after="2"),
        Faults(hang=True),
        Faults(),
        Faults(status=500),
        Faults(body=b'{"support": not json'),
        Faults(body_size=8 * 1024 * 1024),
        Faults(latency=1.5),
        Faults(),
    ]

    async def serve() -> None:
        runner = web.AppRunner(sim.app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        step = 0
        while True:
            await asyncio.sleep(flap_every)
            step += 1
            for n, inst in enumerate(flapping):
                inst.faults = states[(step + n) % len(states)]

    uvloop.run(serve())


# --------------------------------------------------------------------------- hostile clients


class Hostile(threading.Thread):
    """Bounded misbehaving clients of the exporter's endpoint (127.0.0.1 only)."""

    def __init__(self, port: int, names: list[str]) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.names = names
        self.halt = threading.Event()
        self.counts = {"slow readers": 0, "half-open": 0, "flood requests": 0, "refused": 0}

    def connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            self.counts["refused"] += 1
            return None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return sock

    def run(self) -> None:
        threads = [
            threading.Thread(target=self.slow_readers, daemon=True),
            threading.Thread(target=self.half_open, daemon=True),
            threading.Thread(target=self.flood, daemon=True),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def slow_readers(self, count: int = 4, hold: float = 20.0) -> None:
        """GET the whole uncompressed body, then read 4 KiB every half second for ``hold`` s."""
        readers: list[tuple[socket.socket, float]] = []
        while not self.halt.is_set():
            while len(readers) < count:
                sock = self.connect()
                if sock is None:
                    break
                with contextlib.suppress(OSError):
                    sock.sendall(
                        b"GET /metrics HTTP/1.1\r\nHost: soak\r\nAccept: text/plain\r\n\r\n"
                    )
                    readers.append((sock, time.monotonic()))
                    self.counts["slow readers"] += 1
            kept = []
            for sock, since in readers:
                try:
                    sock.settimeout(0.01)
                    alive = bool(sock.recv(4096)) and time.monotonic() - since < hold
                except TimeoutError:
                    alive = time.monotonic() - since < hold
                except OSError:
                    alive = False
                if alive:
                    kept.append((sock, since))
                else:
                    sock.close()
            readers = kept
            self.halt.wait(0.5)
        for sock, _ in readers:
            sock.close()

    def half_open(self, count: int = 20) -> None:
        """Connections that send half a request (or nothing) and wait to be closed."""
        socks: list[socket.socket] = []
        while not self.halt.is_set():
            while len(socks) < count:
                sock = self.connect()
                if sock is None:
                    break
                with contextlib.suppress(OSError):
                    if len(socks) % 2:
                        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nX-Slow: ")
                    socks.append(sock)
                    self.counts["half-open"] += 1
            kept = []
            for sock in socks:
                try:
                    sock.settimeout(0.001)
                    closed = sock.recv(1024) == b""
                except TimeoutError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    sock.close()
                else:
                    kept.append(sock)
            socks = kept
            self.halt.wait(0.5)
        for sock in socks:
            sock.close()

    def flood(self, per_second: float = 100.0) -> None:
        """Small, odd and malformed requests on fresh connections, ``per_second`` at most."""
        rng = random.Random(5)
        requests = [
            lambda: b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n",
            lambda: (
                b"GET /metrics?target=%s HTTP/1.1\r\nHost: soak\r\n\r\n"
                % rng.choice(self.names).encode()
            ),
            lambda: (
                b"GET /metrics?target=nobody-%d HTTP/1.1\r\nHost: soak\r\n\r\n"
                % rng.randrange(10**9)
            ),
            lambda: b"GET /no/such/%d HTTP/1.1\r\nHost: soak\r\n\r\n" % rng.randrange(10**9),
            lambda: b"POST /-/reload HTTP/1.1\r\nHost: soak\r\nContent-Length: 0\r\n\r\n",
            lambda: b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
            lambda: b"GET /metrics HTTP/1.1\r\nHost: soak\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
            lambda: b"GET /-/healthy HTTP/1.1\r\nHost: soak\r\n\r\n",
        ]
        while not self.halt.is_set():
            started = time.monotonic()
            sock = self.connect()
            if sock is not None:
                with contextlib.suppress(OSError), sock:
                    sock.settimeout(2)
                    sock.sendall(rng.choice(requests)())
                    sock.recv(65536)
                    self.counts["flood requests"] += 1
            self.halt.wait(max(0.0, 1 / per_second - (time.monotonic() - started)))


# --------------------------------------------------------------------------- the run


class Scraper(threading.Thread):
    """Prometheus: /metrics every ``every`` seconds (OpenMetrics, gzip), latencies kept."""

    def __init__(self, port: int, every: float) -> None:
        super().__init__(daemon=True)
        self.port, self.every = port, every
        self.halt = threading.Event()
        self.latencies: list[float] = []
        self.last = b""

    def run(self) -> None:
        client = Http(self.port)
        while not self.halt.wait(self.every):
            start = time.perf_counter()
            with contextlib.suppress(OSError, RuntimeError):
                self.last = plain(*client.get(PROM_HEADERS))
                self.latencies.append((time.perf_counter() - start) * 1000)
        client.close()


def write_fleet(path: Path, names: list[str], base: str) -> None:
    entries = [f"{name}={base}/i{i}" for i, name in enumerate(names)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": entries}]))
    tmp.replace(path)  # a reload never reads half a file


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value): value per second."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sim_port, port = free_port(), free_port()
    sim = subprocess.Popen(
        [PYTHON, __file__, "--simulator", str(sim_port), "--targets", str(args.targets),
         "--flap-every", str(args.flap_every)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sim.stdout is not None
    sim.stdout.readline()
    wait_port(sim_port)
    base = f"http://127.0.0.1:{sim_port}"
    generation = 0
    names = [f"g0-{i}" for i in range(args.targets)]
    targets_file = workdir / "targets.json"
    write_fleet(targets_file, names, base)
    config = workdir / "config.yml"
    config.write_text("target_files:\n  - targets.json\n")
    monitor_file = workdir / "monitor.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_") and k != "PYTHONPATH"}
    env.update({"WA_API_KEY": API_KEY, "WA_LOG_LEVEL": "warn", "SOAK_MONITOR": str(monitor_file)})
    cmd = [
        PYTHON, *MONITORED, "--web.listen-address", f"127.0.0.1:{port}",
        "--config.file", str(config), "--poll.interval", f"{args.interval:g}",
        "--poll.timeout", "2", "--poll.max-backoff", f"{args.interval * 2:g}",
    ]  # fmt: skip
    log = workdir / "exporter.log"
    exporter = subprocess.Popen(
        cmd, cwd=args.tree, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    scraper: Scraper | None = None
    hostile: Hostile | None = None
    try:
        wait_port(port, 60)
        proc = psutil.Process(exporter.pid)
        client = Http(port)
        deadline = time.monotonic() + 120
        while len(UP_RE.findall(plain(*client.get(PROM_HEADERS)))) < args.targets * 0.9:
            if time.monotonic() > deadline:
                raise RuntimeError("the fleet did not come up")
            time.sleep(1)
        client.close()
        print("fleet up; soaking", flush=True)
        scraper = Scraper(port, args.scrape_every)
        hostile = Hostile(port, names)
        scraper.start()
        hostile.start()
        began, began_wall = time.monotonic(), time.time()
        samples: list[dict[str, float]] = []
        reloads = 0
        before_reload: list[float] = []  # RSS just before each reload
        next_reload = began + args.reload_every
        cpu0 = sum(proc.cpu_times()[:2])
        while (now := time.monotonic()) < began + args.duration:
            if now >= next_reload:
                generation += 1
                part = round(args.targets * args.fraction)
                start = (generation - 1) * part % args.targets
                for i in range(start, start + part):
                    names[i % args.targets] = f"g{generation}-{i % args.targets}"
                write_fleet(targets_file, names, base)
                before_reload.append(proc.memory_info().rss / 2**20)
                exporter.send_signal(signal.SIGHUP)
                hostile.names = list(names)
                reloads += 1
                next_reload += args.reload_every
            samples.append(
                {
                    "t": now - began,
                    "rss": proc.memory_info().rss / 2**20,
                    "fds": proc.num_fds(),
                    "threads": proc.num_threads(),
                    "cpu": sum(proc.cpu_times()[:2]) - cpu0,
                }
            )
            time.sleep(args.sample_every)
        scraper.halt.set()
        hostile.halt.set()
        scraper.join(10)
        hostile.join(10)
        served = set(TARGET_RE.findall(scraper.last))
        expected = {n.encode() for n in names}
        reload_ok = RELOAD_OK_RE.search(scraper.last)
    finally:
        if scraper is not None:
            scraper.halt.set()
        if hostile is not None:
            hostile.halt.set()
        stop(exporter)
        stop(sim)
    lines = [json.loads(line) for line in monitor_file.read_text().splitlines() if line]
    lines = [line for line in lines if began_wall <= line["t"] <= began_wall + args.duration]
    lags = sorted(lag for line in lines for lag in line["lags"])
    tasks = [line["tasks"] for line in lines]
    warm = [s for s in samples if s["t"] >= args.duration / 3]
    return {
        "duration": args.duration,
        "targets": args.targets,
        "reloads": reloads,
        "renamed": reloads * round(args.targets * args.fraction),
        "before_reload": before_reload,
        "samples": samples,
        "rss_start": samples[0]["rss"],
        "rss_warm": warm[0]["rss"],
        "rss_end": samples[-1]["rss"],
        "rss_max": max(s["rss"] for s in samples),
        "slope_mib_per_min": slope([(s["t"], s["rss"]) for s in warm]) * 60,
        "slope_all_mib_per_min": slope([(s["t"], s["rss"]) for s in samples]) * 60,
        "fds": (min(s["fds"] for s in samples), max(s["fds"] for s in samples)),
        "threads": (min(s["threads"] for s in samples), max(s["threads"] for s in samples)),
        "tasks": (min(tasks), max(tasks)),
        "lag_p99_ms": lags[min(len(lags) - 1, round(0.99 * (len(lags) - 1)))] * 1000,
        "lag_max_ms": lags[-1] * 1000,
        "cores": samples[-1]["cpu"] / samples[-1]["t"],
        "scrape_median_ms": statistics.median(scraper.latencies) if scraper else 0.0,
        "scrape_max_ms": max(scraper.latencies) if scraper else 0.0,
        "scrapes": len(scraper.latencies) if scraper else 0,
        "hostile": dict(hostile.counts) if hostile else {},
        "served_as_configured": served == expected,
        "last_reload_ok": reload_ok is not None and reload_ok.group(1) == b"1",
        "loadavg": os.getloadavg()[0],
    }


def windows(samples: list[dict[str, float]], seconds: float = 30.0) -> list[tuple[float, float]]:
    """(lowest, highest) RSS of each window of ``seconds``."""
    out = []
    for start in range(0, int(samples[-1]["t"]) + 1, int(seconds)):
        rss = [s["rss"] for s in samples if start <= s["t"] < start + seconds]
        if rss:
            out.append((min(rss), max(rss)))
    return out


def floor_slope(r: dict[str, Any], seconds: float = 30.0) -> float:
    """MiB per minute of the lowest RSS of each window once warm: the footprint the process
    comes back to between passing peaks."""
    samples = r["samples"]
    lows = []
    end = samples[-1]["t"]
    for start in range(int(r["duration"] / 3), int(end - seconds) + 1, int(seconds)):  # whole
        rss = [s["rss"] for s in samples if start <= s["t"] < start + seconds]
        if rss:
            lows.append((float(start), min(rss)))
    return slope(lows) * 60 if len(lows) >= 3 else math.nan  # two points are no trend


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    lows_highs = windows(r["samples"])
    return [
        (
            "RSS at start / after a third / at the end / highest",
            f"{r['rss_start']:.1f} / {r['rss_warm']:.1f} / {r['rss_end']:.1f} /"
            f" {r['rss_max']:.1f} MiB",
        ),
        ("RSS just before each reload (MiB)", " ".join(f"{v:.0f}" for v in r["before_reload"])),
        ("RSS low-high every 30 s (MiB)", " ".join(f"{a:.0f}-{b:.0f}" for a, b in lows_highs)),
        (
            "RSS slope once warm: of the 30 s lows / of every sample",
            (
                f"{floor_slope(r):+.2f} / {r['slope_mib_per_min']:+.2f} MiB per minute"
                f" ({r['slope_all_mib_per_min']:+.2f} over the whole run)"
            ).replace("+nan", "n/a (run too short)"),
        ),
        ("open descriptors (min-max)", f"{r['fds'][0]}-{r['fds'][1]}"),
        ("threads (min-max)", f"{r['threads'][0]}-{r['threads'][1]}"),
        ("event loop tasks (min-max)", f"{r['tasks'][0]}-{r['tasks'][1]}"),
        ("event loop lag p99 / max", f"{r['lag_p99_ms']:.1f} / {r['lag_max_ms']:.1f} ms"),
        ("exporter CPU", f"{r['cores']:.3f} cores"),
        (
            f"scrape latency median / max ({r['scrapes']} scrapes)",
            f"{r['scrape_median_ms']:.1f} / {r['scrape_max_ms']:.1f} ms",
        ),
        (
            "served targets after the last reload are the configured ones",
            "yes" if r["served_as_configured"] else "**no**",
        ),
        ("last reload successful", "yes" if r["last_reload_ok"] else "**no**"),
    ]


def report(results: list[tuple[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    info = machine()
    r = results[-1][1]
    hostile = ", ".join(f"{v} {k}" for k, v in r["hostile"].items())
    argv = sys.argv[1:]
    if "--report-from" in argv:  # the run's own command, not the re-rendering's
        at = argv.index("--report-from")
        argv = argv[:at] + argv[at + 2 :]
    command = shlex.join(["python", "bench/soak.py", *argv])
    part = "a tenth" if args.fraction == 0.1 else f"{args.fraction:.0%}"
    load = f" (load average {r['loadavg']:.1f} at the end)" if "loadavg" in r else ""
    table = [
        "| figure | " + " | ".join(label for label, _ in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    per_result = [rows(result) for _, result in results]
    for i, (name, _) in enumerate(per_result[0]):
        table.append(f"| {name} | " + " | ".join(rs[i][1] for rs in per_result) + " |")
    table_text = "\n".join(table)
    return f"""## Soak: {args.title}

Generated by `{command}` on {info["date"]} ({info["cpu"]},
{info["cores"]} cores), {args.duration:g} s per run. **The machine was shared with other work
during this run**{load}: CPU, lag and
latency figures are upper bounds inflated by the load; the memory figures are not affected.

Compressed time: {r["targets"]:,} targets polled every {args.interval:g} s (30 s in
production), a reload every {args.reload_every:g} s (the "minute") renaming {part} of them
({r["reloads"]} reloads, {r["renamed"]:,} targets renamed: the whole fleet
{r["renamed"] / r["targets"]:.1f} times over), a twentieth of the upstreams cycling every
{args.flap_every:g} s through 503 with Retry-After, 429, 500, a hang past the 2 s poll timeout,
invalid JSON, an 8 MiB body (over the 4 MiB cap), 1.5 s answers and health; on the exporter's
port, bounded and on loopback: {hostile}; a scrape every {args.scrape_every:g} s (OpenMetrics,
gzip). RSS moves by tens of MiB within seconds (answers read up to the 4 MiB cap, an 8 MiB
uncompressed body held by each slow reader), so the trend is read from the lowest RSS of each
30 s window once warm (after the first third of the run): the footprint the process comes back
to; the least-squares fit over every sample is given too, at the mercy of where the run ends
relative to a peak.

{table_text}
"""


def workdir(tmp: str, name: str) -> Path:
    path = Path(tmp) / name
    path.mkdir()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=3000)
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of soak")
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--reload-every", type=float, default=15.0)
    parser.add_argument("--flap-every", type=float, default=5.0)
    parser.add_argument("--scrape-every", type=float, default=2.0)
    parser.add_argument("--sample-every", type=float, default=2.0)
    parser.add_argument("--fraction", type=float, default=0.1, help="part renamed per reload")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the exporter's source tree")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--baseline", help="also run this git revision first, for comparison")
    parser.add_argument("--section", default="soak", help="section of the report to rewrite")
    parser.add_argument(
        "--title",
        default="a fleet renamed by reloads, flapping upstreams, hostile clients",
        help="the section's title",
    )
    parser.add_argument("--report-from", type=Path, help="rewrite the section from a --json file")
    parser.add_argument("--simulator", type=int, help=argparse.SUPPRESS)  # the upstreams' port
    args = parser.parse_args()
    if args.simulator:
        run_simulator(args.simulator, args.targets, args.flap_every)
        return
    if args.report_from:
        text = report(json.loads(args.report_from.read_text()), args)
        write_section(args.output, args.section, text)
        print(text)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="wa-soak-") as tmp:
        if args.baseline:
            tree = Path(tmp) / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", "-q", str(tree), args.baseline],
                cwd=ROOT, check=True,
            )  # fmt: skip
            try:
                baseline = argparse.Namespace(**{**vars(args), "tree": tree})
                results.append((f"baseline {args.baseline}", soak(baseline, workdir(tmp, "base"))))
            finally:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False
                )
        label = "this tree" if args.baseline else "value"
        results.append((label, soak(args, workdir(tmp, "this"))))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    text = report(results, args)
    write_section(args.output, args.section, text)
    print(text)


if __name__ == "__main__":
    main()
