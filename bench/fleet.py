"""Fleet benchmark: a fleet from target files, its load, steady cost and reload cost.

``python bench/fleet.py`` (about 3 minutes) rewrites docs/benchmarks-fleet.md. Two fleets: 1,000
targets (the reload target: one changed target costs under 50 ms of CPU, no poll skipped) and
20,000 targets at a 30 s interval (CPU and memory of the largest fleet one process takes).
The simulator and the exporter run as separate processes on loopback, as in bench/run.py.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import (  # noqa: E402  (bench/ is not a package)
    API_KEY,
    POLLS_RE,
    PROM_HEADERS,
    UP_RE,
    Http,
    cpu_seconds,
    free_port,
    machine,
    peak_rss_mib,
    plain,
    stop,
    total,
    wait_port,
)

PYTHON = sys.executable
RELOAD_RE = re.compile(r'msg="configuration reloaded".*?cpu_ms=([0-9.]+)')
PER_FILE = 1000


def simulator(count: int) -> tuple[subprocess.Popen[str], int, list[str]]:
    port = free_port()
    cmd = [
        PYTHON, "-m", "whatsapp_api_simulator", "--listen", f"127.0.0.1:{port}",
        "--single", str(count), "--api-key", API_KEY, "--rate", "1000000", "--burst", "1000000",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    wait_port(port)
    return proc, port, [t for t in line.split(",") if t]


def scrape(client: Http) -> bytes:
    """/metrics as Prometheus asks for it (OpenMetrics, gzip), decompressed."""
    return plain(*client.get(PROM_HEADERS))


def write_fleet(workdir: Path, targets: list[str]) -> Path:
    files = workdir / "targets"
    files.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(targets), PER_FILE):
        chunk = targets[i : i + PER_FILE]
        lines = "\n".join(f'    - "{t}"' for t in chunk)
        (files / f"t{i // PER_FILE:03d}.yml").write_text(f"- targets:\n{lines}\n")
    config = workdir / "config.yml"
    config.write_text("target_files:\n  - targets/*.yml\n")
    return config


def run_fleet(count: int, interval: float, window: float, workdir: Path) -> dict[str, Any]:
    sim, _, targets = simulator(count)
    config = write_fleet(workdir, targets)
    port = free_port()
    log = workdir / "exporter.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env.update({"WA_API_KEY": API_KEY, "WA_LOG_LEVEL": "info"})
    cmd = [
        PYTHON, "-m", "whatsapp_support_exporter", "--web.listen-address", f"127.0.0.1:{port}",
        "--config.file", str(config), "--poll.interval", f"{interval:g}",
        "--no-collector.health", "--no-collector.shards",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    try:
        wait_port(port, 60)
        listening = time.monotonic() - started
        client = Http(port)
        deadline = time.monotonic() + 120
        while True:
            body = scrape(client)
            if len(UP_RE.findall(body)) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        all_up = time.monotonic() - started
        ps, sim_ps = psutil.Process(proc.pid), psutil.Process(sim.pid)
        time.sleep(min(interval, 10))  # let the first round settle
        body = scrape(client)
        polls0, cpu0, t0 = total(POLLS_RE, body), cpu_seconds(ps), time.monotonic()
        sim_cpu0 = cpu_seconds(sim_ps)
        time.sleep(window)
        body = scrape(client)
        polls1, cpu1, t1 = total(POLLS_RE, body), cpu_seconds(ps), time.monotonic()
        sim_cpu1 = cpu_seconds(sim_ps)
        rss = ps.memory_info().rss / 2**20
        # reload with one target changed: its URL moves to another simulated instance
        first = sorted((workdir / "targets").glob("*.yml"))[0]
        text = first.read_text()
        name = targets[0].split("=", 1)[0]
        moved = f'"{name}={targets[1].split("=", 1)[1]}"'
        first.write_text(text.replace(f'"{targets[0]}"', moved))
        polls_before = total(POLLS_RE, scrape(client))
        reload_at = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        cpu_ms = None
        while time.monotonic() - reload_at < 10 and cpu_ms is None:
            match = RELOAD_RE.search(log.read_text())
            cpu_ms = float(match.group(1)) if match else None
            time.sleep(0.1)
        time.sleep(window)
        polls_after = total(POLLS_RE, scrape(client))
        elapsed = time.monotonic() - reload_at
        client.close()
        return {
            "targets": count,
            "interval": interval,
            "listening": listening,
            "all_up": all_up,
            "polls_per_s": (polls1 - polls0) / (t1 - t0),
            "cores": (cpu1 - cpu0) / (t1 - t0),
            "simulator_cores": (sim_cpu1 - sim_cpu0) / (t1 - t0),
            "cpu_per_poll_ms": (cpu1 - cpu0) / max(polls1 - polls0, 1) * 1000,
            "rss": rss,
            "peak": peak_rss_mib(proc.pid),
            "reload_cpu_ms": cpu_ms,
            "polls_after_reload_per_s": (polls_after - polls_before) / elapsed,
            "expected_per_s": count / interval,
        }
    finally:
        stop(proc)
        stop(sim)


def report(results: list[dict[str, Any]], seconds: float) -> str:
    info = machine()
    rows = "\n".join(
        f"| {r['targets']} | {r['interval']:g} s | {r['listening']:.2f} s | {r['all_up']:.1f} s |"
        f" {r['polls_per_s']:.1f} (expected {r['expected_per_s']:.1f}) | {r['cpu_per_poll_ms']:.3f} ms |"
        f" {r['cores']:.3f} | {r['simulator_cores']:.2f} | {r['rss']:.1f} MiB | {r['peak']:.1f} MiB |"
        f" {r['reload_cpu_ms']} ms | {r['polls_after_reload_per_s']:.1f} |"
        for r in results
    )
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in info.items())
    return f"""# Fleet benchmarks

Generated by `python bench/fleet.py` in {seconds / 60:.1f} minutes; do not edit by hand.

## Machine

| | |
|---|---|
{machine_rows}

## Method

The simulator serves N single instances on one port; the exporter reads them from target files
(1,000 targets a file, `--config.file` with one `target_files` glob), polls `/v1/support` only
(`--no-collector.health --no-collector.shards`, the requests of 0.1) every interval. Windows are
two intervals long: a fleet's polls come in bursts (its first round starts within a second), so
a window of a whole number of intervals holds each target's polls the same number of times.
The exporter's garbage-collector settings (`settle_gc`) are measured by `bench/gc_settings.py`. **listening**:
from spawning the exporter (imports and the configuration's load included) to its port answering.
**RSS**: after the window, the exporter having been scraped as Prometheus scrapes (OpenMetrics,
gzip) every half second until all targets were up and a few times since.
**cores** and **CPU/poll**: exporter CPU over a window after the first round (no scraper);
**simulator cores**: the simulator's CPU in the same window (it shares the machine's cores: when
exporter and simulator together need more than the machine has, polls/s falls below expected).
**reload**: one target's URL changed in a target file, then SIGHUP; the CPU the reload took as
the exporter logs it (`cpu_ms`), and the poll rate in the window after it (a skipped poll would
show as a rate below the expected one).

## Results

| targets | interval | listening | all up | polls/s | CPU/poll | cores | simulator cores | RSS | peak RSS | reload CPU | polls/s after reload |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller fleets, short windows")
    args = parser.parse_args()
    begun = time.monotonic()
    plan = (
        [(200, 5.0, 10.0), (2000, 30.0, 20.0)]
        if args.quick
        else [(1000, 10.0, 20.0), (20000, 30.0, 60.0)]
    )
    results = []
    for count, interval, window in plan:
        workdir = Path(f"/tmp/wa-bench-fleet-{count}")
        results.append(run_fleet(count, interval, window, workdir))
        print(results[-1], flush=True)
    text = report(results, time.monotonic() - begun)
    if not args.quick:
        (ROOT / "docs" / "benchmarks-fleet.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
