"""The exporter's own HTTP endpoints: /metrics, the landing page, /-/healthy and /-/ready.

Nothing here waits on an upstream: /metrics serves what the snapshot store already holds, and
readiness means "this process serves", never "the WhatsApp client is healthy" (a sidecar's
readiness gates the whole Pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Exposition
from exporter.poller import Poller
from exporter.store import SnapshotStore

EXPOSITION = web.AppKey("exposition", Exposition)
STORE = web.AppKey("store", SnapshotStore)
READY = web.AppKey("ready", list)  # [bool]: set once the pollers are started
TELEMETRY_PATH = web.AppKey("telemetry_path", str)


def wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in accept


def wants_gzip(accept_encoding: str) -> bool:
    return any(
        part.split(";")[0].strip() == "gzip" and "q=0" not in part.replace(" ", "").split(";")[1:]
        for part in accept_encoding.lower().split(",")
    )


async def metrics(request: web.Request) -> web.Response:
    openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
    gzip = wants_gzip(request.headers.get("Accept-Encoding", ""))
    body = request.app[EXPOSITION].render(openmetrics=openmetrics, gzip=gzip)
    response = web.Response(body=body)
    response.headers["Content-Type"] = (
        OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
    )
    response.headers["Vary"] = "Accept, Accept-Encoding"
    if gzip:
        response.headers["Content-Encoding"] = "gzip"
    return response


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[READY][0]:
        return web.Response(text="OK\n")
    return web.Response(status=503, text="starting\n")


async def landing(request: web.Request) -> web.Response:
    """Name, version, a link to the metrics, and each target's state (never a secret)."""
    path = html.escape(request.app[TELEMETRY_PATH])
    now = time.time()
    rows = []
    for snap in request.app[STORE].snapshots.values():
        age = "never" if snap.last_success is None else f"{now - snap.last_success:.0f}s ago"
        containers = len(snap.support.containers) if snap.support else 0
        state = "up" if snap.up else ("starting" if snap.polls == 0 else "down")
        error = f"{snap.last_error}: {snap.last_error_detail}" if snap.last_error else ""
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (snap.name, snap.url, state, age, containers, snap.polls, error)
            )
            + "</tr>"
        )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>WhatsApp Support Exporter</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 10px;text-align:left}}</style></head>
<body><h1>WhatsApp Support Exporter</h1>
<p>Version {html.escape(__version__)}. Polls <code>/v1/support</code> of each WhatsApp Business API
client on its own schedule and serves the result.</p>
<p><a href="{path}">Metrics</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Ready</a></p>
<h2>Targets</h2>
<table><tr><th>target</th><th>URL</th><th>state</th><th>last success</th><th>containers</th>
<th>polls</th><th>last error</th></tr>
{"".join(rows)}
</table></body></html>
"""
    return web.Response(text=page, content_type="text/html")


# How old the exporter's own process metrics may be when scraped.
RUNTIME_REFRESH_SECONDS = 1.0


async def _refresh_runtime_metrics(app: web.Application) -> AsyncIterator[None]:
    """Keep the process and Python metrics fresh without reading /proc on the scrape path."""

    async def refresh() -> None:
        while True:
            await asyncio.sleep(RUNTIME_REFRESH_SECONDS)
            app[EXPOSITION].refresh_runtime()

    task = asyncio.create_task(refresh(), name="refresh runtime metrics")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    store: SnapshotStore,
    *,
    poller: Poller | None = None,
    exposition: Exposition | None = None,
    telemetry_path: str = "/metrics",
    middlewares: list[Callable[..., Any]] | None = None,
) -> web.Application:
    """The web application; the poller (if any) runs for the application's lifetime."""
    app = web.Application(middlewares=middlewares or [])
    app[STORE] = store
    app[EXPOSITION] = exposition or Exposition(store)
    app[TELEMETRY_PATH] = telemetry_path
    app[READY] = [poller is None]
    app.cleanup_ctx.append(_refresh_runtime_metrics)
    if poller is not None:

        async def run_poller(app: web.Application) -> AsyncIterator[None]:
            await poller.start()
            app[READY][0] = True
            yield
            app[READY][0] = False
            await poller.stop()

        app.cleanup_ctx.append(run_poller)
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/", landing)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    return app
