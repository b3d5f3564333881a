"""Render the Grafana dashboard to a PNG from a real Prometheus, without a Grafana server.

Each panel is drawn where its ``gridPos`` puts it, with its title, its unit, its value mappings
and thresholds, from the same PromQL the dashboard sends (variables as "All" selects them). It is
a preview of what Grafana shows, not a copy of Grafana's look.

    python scripts/render_dashboard.py   # start a demo fleet, rewrite docs/dashboard.png
    python scripts/render_dashboard.py --prometheus http://localhost:9090 -o /tmp/board.png

Without ``--prometheus`` it starts, on loopback ports, a simulator with failovers, three
exporters (a ``--demo`` and two polling the simulator like an HA pair of sidecars) and a
Prometheus scraping them every second, collects ``--collect`` seconds of data, renders and
stops them all.

The demo fleet is `demo_fleet`, the queries go through `prometheus_api`, each panel is drawn by
`panel_drawing` and the page laid out by `dashboard_drawing`.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack
from pathlib import Path

from dashboard_drawing import render
from demo_fleet import demo_fleet, wait_for_data
from panel_drawing import Context
from prometheus_api import Prometheus

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "whatsapp-support-exporter.json"
OUTPUT = ROOT / "docs" / "dashboard.png"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", help="Prometheus base URL (default: start a demo fleet)")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT, help=f"PNG (default {OUTPUT})")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument(
        "--collect", type=float, default=180, help="seconds of demo data to collect"
    )
    parser.add_argument(
        "--window", type=float, default=3600, help="seconds shown (with --prometheus)"
    )
    parser.add_argument("--failover-every", type=float, default=50, help="demo failover period")
    args = parser.parse_args(argv)
    dashboard = json.loads(args.dashboard.read_text())
    with ExitStack() as stack:
        if args.prometheus:
            api, end = args.prometheus.rstrip("/") + "/api/v1", time.time()
            start = end - args.window
        else:
            api = stack.enter_context(demo_fleet(args.failover_every))
            start = wait_for_data(Prometheus(api, {}), 60)
            time.sleep(args.collect)  # the demo needs some history to draw
            end = time.time()
        step = max(1.0, round((end - start) / 300))
        builtins = {
            "__rate_interval": f"{max(4 * step, 30):g}s",
            "__interval": f"{step:g}s",
            "__range": f"{end - start:.0f}s",
        }
        began = time.monotonic()
        render(dashboard, Context(Prometheus(api, builtins), start, end, step), args.output)
    print(f"render_dashboard: wrote {args.output} in {time.monotonic() - began:.1f}s")


if __name__ == "__main__":
    main()
