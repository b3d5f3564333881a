#!/usr/bin/env python3
"""The sidecar: how soon the first poll succeeds and how much memory one target takes.

    python bench/sidecar.py          # about a minute; rewrites its section of docs/benchmarks.md

Each round starts the simulator with one single instance, then, side by side, the exporter with
that one target (``--target``, as a sidecar is configured) and ``bench/bare_poller.py``, a bare
poller of the same stack (aiohttp, uvloop, orjson, pydantic, prometheus_client). Both write the
wall time at which their imports were done; /metrics is then fetched every 2 ms until the target
is up. **imports to first success**: from the end of the imports to the first success served;
**start to first success**: from spawning the process. After that both poll once a second while
a scraper GETs /metrics once a second (and 200 times in a row at the end), and **peak RSS** is
their ``VmHWM``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import (  # noqa: E402  (bench/ is not a package)
    API_KEY,
    PROM_HEADERS,
    UP_RE,
    Case,
    Http,
    free_port,
    machine,
    peak_rss_mib,
    start_exporter,
    start_simulator,
    stop,
    wait_port,
    write_section,
)

PYTHON = sys.executable
IMPORTED_RE = re.compile(rb"^imported (\d+\.\d+)$", re.M)
# The exporter, with the wall time its imports were done written to stderr.
EXPORTER = (
    "-c",
    "import sys, time\n"
    "import whatsapp_support_exporter.cli.main as m\n"
    "print(f'imported {time.time():.6f}', file=sys.stderr, flush=True)\n"
    "sys.argv[0] = 'exporter'\n"
    "m.main()",
)
BARE_UP_RE = re.compile(rb"^bare_up 1\.0$", re.M)


def first_success(port: int, up: re.Pattern[bytes], timeout: float = 30.0) -> float:
    """Wall time of the first /metrics that shows the target up (fetched every 2 ms)."""
    deadline = time.monotonic() + timeout
    client: Http | None = None
    while time.monotonic() < deadline:
        try:
            if client is None:
                client = Http(port)
            body, _ = client.get({"Accept": "text/plain"})
        except OSError:
            client = None
            time.sleep(0.002)
            continue
        if up.search(body):
            client.close()
            return time.time()
        time.sleep(0.002)
    raise RuntimeError("the target never came up")


def imported_at(log: Path) -> float:
    match = IMPORTED_RE.search(log.read_bytes())
    if match is None:
        raise RuntimeError(f"no import time in {log}")
    return float(match.group(1))


def scrape_for(ports: list[int], seconds: float) -> None:
    clients = [Http(port) for port in ports]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for client in clients:
            client.get(PROM_HEADERS)
        time.sleep(1.0)
    for client in clients:
        for _ in range(200):
            client.get(PROM_HEADERS)
        client.close()


def one_round(workdir: Path, steady: float) -> dict[str, float]:
    sim, targets = start_simulator(Case("sidecar", "sidecar", singles=1))
    url = targets[0].split("=", 1)[1]
    port, bare_port = free_port(), free_port()
    exporter_log, bare_log = workdir / "exporter.log", workdir / "bare.log"
    bare: subprocess.Popen[bytes] | None = None
    exporter, started = start_exporter(targets, 1.0, port, exporter_log, program=EXPORTER)
    spawned = time.time() - (time.monotonic() - started)
    try:
        success = first_success(port, UP_RE)
        figures = {
            "imports_to_success": success - imported_at(exporter_log),
            "start_to_success": success - spawned,
        }
        bare_spawned = time.time()
        bare = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "bare_poller.py"), f"{url}/v1/support", API_KEY,
             str(bare_port), "1"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=bare_log.open("wb"),
        )  # fmt: skip
        bare_success = first_success(bare_port, BARE_UP_RE)
        figures["bare_imports_to_success"] = bare_success - imported_at(bare_log)
        figures["bare_start_to_success"] = bare_success - bare_spawned
        wait_port(bare_port)
        scrape_for([port, bare_port], steady)
        figures["peak_rss"] = peak_rss_mib(exporter.pid)
        figures["bare_peak_rss"] = peak_rss_mib(bare.pid)
        return figures
    finally:
        if bare is not None:
            stop(bare)
        stop(exporter)
        stop(sim)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steady", type=float, default=10.0, help="seconds of polls and scrapes")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="wa-sidecar-") as tmp:
        for _ in range(args.rounds):
            rounds.append(one_round(Path(tmp), args.steady))
            print({k: round(v, 3) for k, v in rounds[-1].items()}, flush=True)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    info = machine()
    text = f"""## Sidecar: first success and memory of one target

Generated by `python bench/sidecar.py --rounds {args.rounds}` on {info["date"]} ({info["cpu"]},
{info["cores"]} cores); medians of {args.rounds} rounds. **The machine was shared with other
work during this run** (load average {os.getloadavg()[0]:.1f} at the end): the times are noisy.

The exporter with one target given by `--target` (a sidecar's configuration), side by side with
`bench/bare_poller.py`: a bare poller of the same stack (aiohttp, uvloop, orjson, pydantic,
prometheus_client) that GETs /v1/support, validates it with a pydantic model and serves one
gauge. Both write the wall time their imports were done; /metrics is fetched every 2 ms until the
target is up. Peak RSS is `VmHWM` after {args.steady:g} s of polls every second with a scrape
every second and 200 scrapes in a row.

| | exporter (sidecar, 1 target) | bare poller of the same stack |
|---|---:|---:|
| imports done to first success | {med("imports_to_success"):.3f} s | {med("bare_imports_to_success"):.3f} s |
| process start to first success | {med("start_to_success"):.3f} s | {med("bare_start_to_success"):.3f} s |
| peak RSS (VmHWM) | {med("peak_rss"):.1f} MiB | {med("bare_peak_rss"):.1f} MiB |
"""
    write_section(args.output, "sidecar", text)
    print(text)


if __name__ == "__main__":
    main()
