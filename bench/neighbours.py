"""Bad neighbours: healthy targets beside hanging and hostile upstreams.

``python bench/neighbours.py`` (about 2 minutes) rewrites docs/benchmarks-neighbours.md.

* **starvation**: 1,000 targets at a 10 s interval, 100 of them pointing at a server that
  accepts connections and never answers (10 s poll timeout). How many healthy targets are polled
  within each interval, and how many have their data withdrawn as stale.
* **hostile**: one target answering a 100,000-container body (4.3 MB, the size cap raised to
  16 MiB so it reaches the series limit) and one answering 1,500 containers owning 1,023 shards
  each, polled every second beside a healthy target: the exporter's peak memory, and how late
  the healthy target's polls are.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from fleet import simulator, write_fleet  # noqa: E402  (bench/ is not a package)
from run import API_KEY, Http, free_port, machine, peak_rss_mib, stop, wait_port  # noqa: E402

PYTHON = sys.executable
POLLS_BY_TARGET = re.compile(rb'^whatsapp_exporter_polls_total\{target="([^"]+)"\} (\S+)$', re.M)
DATA_BY_TARGET = re.compile(rb'^whatsapp_socket_connected\{target="([^"]+)"', re.M)
# A server for bad answers: "silent" accepts and never answers; the others serve a hostile body
# (the tests' fixtures: run from the repository's root, where `tests` is importable).
BAD_SERVER = """
import asyncio, sys
from aiohttp import web
from tests import hostile as s
async def main():
    raw = await s.start_raw_server("silent", port=int(sys.argv[1]))
    bodies = {"many": s.many_containers_body(), "shards": s.huge_shards_body()}
    async def serve(request):
        return web.Response(body=bodies[request.match_info["kind"]], content_type="application/json")
    app = web.Application()
    app.router.add_get("/{kind}/v1/support", serve)
    runner = web.AppRunner(app); await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[2])).start()
    await asyncio.Event().wait()
asyncio.run(main())
"""


def exporter(config: Path, interval: float, extra: list[str], log: Path) -> tuple[Any, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env.update({"WA_API_KEY": API_KEY, "WA_LOG_LEVEL": "warn"})
    cmd = [
        PYTHON, "-m", "whatsapp_support_exporter", "--web.listen-address", f"127.0.0.1:{port}",
        "--config.file", str(config), "--poll.interval", f"{interval:g}",
        "--no-collector.health", "--no-collector.shards", *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    wait_port(port, 60)
    return proc, port


def polls(client: Http) -> tuple[dict[bytes, float], set[bytes]]:
    body, _ = client.get({"Accept": "text/plain"})
    counts = {name: float(v) for name, v in POLLS_BY_TARGET.findall(body)}
    return counts, set(DATA_BY_TARGET.findall(body))


def starvation(bad_silent: int, workdir: Path) -> dict[str, Any]:
    sim, _, healthy = simulator(900)
    hanging = [f"hang{i}=http://127.0.0.1:{bad_silent}/hang{i}" for i in range(100)]
    config = write_fleet(workdir, healthy + hanging)
    proc, port = exporter(config, 10.0, ["--poll.timeout", "10s"], workdir / "exporter.log")
    try:
        client = Http(port)
        time.sleep(15)  # the first round, hanging polls included, is over
        worst_polled, worst_stale = 900, 0
        for _ in range(3):  # three intervals
            before, _ = polls(client)
            time.sleep(10.5)
            after, with_data = polls(client)
            names = [t.split("=")[0].encode() for t in healthy]
            polled = sum(1 for n in names if after.get(n, 0) > before.get(n, 0))
            worst_polled = min(worst_polled, polled)
            worst_stale = max(worst_stale, sum(1 for n in names if n not in with_data))
        return {"healthy polled in each interval (worst)": f"{worst_polled} of 900",
                "healthy stale (worst)": worst_stale, "peak memory": f"{peak_rss_mib(proc.pid):.1f} MiB"}  # fmt: skip
    finally:
        stop(proc)
        stop(sim)


def hostile(bad_http: int, workdir: Path) -> dict[str, Any]:
    sim, _, healthy = simulator(1)
    targets = [
        healthy[0],
        f"many=http://127.0.0.1:{bad_http}/many",
        f"shards=http://127.0.0.1:{bad_http}/shards",
    ]
    config = write_fleet(workdir, targets)
    extra = ["--poll.max-response-bytes", str(16 * 2**20)]
    proc, port = exporter(config, 1.0, extra, workdir / "exporter.log")
    try:
        client = Http(port)
        name = healthy[0].split("=")[0].encode()
        time.sleep(3)
        start_counts, _ = polls(client)
        started = time.monotonic()
        time.sleep(20)
        end_counts, with_data = polls(client)
        rate = (end_counts[name] - start_counts[name]) / (time.monotonic() - started)
        errors = client.get({"Accept": "text/plain"})[0]
        refused = len(
            re.findall(
                rb'poll_errors_total\{target="(?:many|shards)",reason="invalid_response"\} [1-9]',
                errors,
            )
        )
        return {"healthy polls per second (interval 1 s)": f"{rate:.2f}",
                "healthy keeps its data": name in with_data,
                "hostile targets refused as invalid_response": f"{refused} of 2",
                "peak memory": f"{peak_rss_mib(proc.pid):.1f} MiB"}  # fmt: skip
    finally:
        stop(proc)
        stop(sim)


def main() -> None:
    begun = time.monotonic()
    silent, http_port = free_port(), free_port()
    bad = subprocess.Popen([PYTHON, "-c", BAD_SERVER, str(silent), str(http_port)], cwd=ROOT)
    try:
        wait_port(silent)
        wait_port(http_port)
        results = {
            "starvation: 1,000 targets, 100 hanging": starvation(
                silent, Path("/tmp/wa-bench-starve")
            ),
            "hostile: 100,000 containers and 1,500 x 1,023 shards beside a healthy target": hostile(
                http_port, Path("/tmp/wa-bench-hostile")
            ),
        }
    finally:
        stop(bad)
    lines = [
        "# Bad neighbours",
        "",
        f"Generated by `python bench/neighbours.py` in {(time.monotonic() - begun) / 60:.1f} minutes; do not edit by hand.",
        "",
    ]
    lines += [
        (__doc__ or "").split("\n\n", 2)[2].strip(),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in machine().items()]
    for case, figures in results.items():
        lines += ["", f"## {case}", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in figures.items()]
    text = "\n".join(lines) + "\n"
    (ROOT / "docs" / "benchmarks-neighbours.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
