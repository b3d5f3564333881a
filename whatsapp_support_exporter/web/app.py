"""The exporter's own HTTP endpoints: /metrics, /sd, the landing page, /-/healthy, /-/ready and
/-/reload.

Nothing here waits on an upstream: /metrics serves what the store already holds, and readiness
means "this process serves", never "the WhatsApp client is healthy" (a sidecar's readiness gates
the whole Pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from aiohttp import web

from whatsapp_support_exporter import __version__
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.negotiation import choose, wants_gzip
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.web.server import send_body

EXPOSITION = web.AppKey("exposition", Exposition)
STORE = web.AppKey("store", Store)
READY = web.AppKey("ready", list)  # [bool]: set once the pollers are started
TELEMETRY_PATH = web.AppKey("telemetry_path", str)
# Reload the configuration: None on success, else the error line (``--web.enable-lifecycle``).
Reload = Callable[[str], Awaitable[str | None]]
RELOAD: web.AppKey[Reload] = web.AppKey("reload")
RELOAD_STATUS: web.AppKey[Callable[[], str]] = web.AppKey("reload_status")
LANDING = web.AppKey("landing", dict)  # cached page: {"key": (generation, second), "page": str}

# The landing page is rendered at most once a second (and only when something changed).
LANDING_CACHE_SECONDS = 1.0


async def metrics(request: web.Request) -> web.StreamResponse:
    fmt = choose(request.headers.get("Accept", ""))
    gzip = wants_gzip(request.headers.get("Accept-Encoding", ""))
    exposition = request.app[EXPOSITION]
    target = request.query.get("target")
    if target is not None:
        body = exposition.render_target(target, openmetrics=fmt.openmetrics)
        if body is None:
            raise web.HTTPNotFound(text="this exporter does not poll that target\n")
        gzip = False
    else:
        body = exposition.render(openmetrics=fmt.openmetrics, gzip=gzip)
    headers = {"Content-Type": fmt.content_type, "Vary": "Accept, Accept-Encoding"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    # written in chunks: a client that does not read holds a bounded buffer, not the body
    return await send_body(request, body, headers=headers)


async def service_discovery(request: web.Request) -> web.Response:
    """This replica's targets in Prometheus' http_sd format, for per-target scrapes.

    Only `__param_target`: the target's own labels reach Prometheus once, on
    whatsapp_target_info (as target labels too they would come back as `exported_<name>`).
    """
    address = request.host
    groups = [
        {"targets": [address], "labels": {"__param_target": snap.name}}
        for snap in request.app[STORE].snapshots.values()
    ]
    return web.json_response(groups)


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[READY][0]:
        return web.Response(text="OK\n")
    return web.Response(status=503, text="starting\n")


async def reload_config(request: web.Request) -> web.Response:
    error = await request.app[RELOAD]("POST /-/reload")
    if error is not None:
        return web.Response(status=500, text=f"reload failed: {error}\n")
    return web.Response(text="OK\n")


async def landing(request: web.Request) -> web.Response:
    """Name, version, a link to the metrics, and each target's state (never a secret)."""
    now = time.time()
    cache = request.app[LANDING]
    key = (request.app[STORE].generation, int(now / LANDING_CACHE_SECONDS))
    if cache.get("key") != key:
        cache["key"], cache["page"] = key, _landing_page(request.app, now)
    return web.Response(text=cache["page"], content_type="text/html")


def _landing_page(app: web.Application, now: float) -> str:
    path = html.escape(app[TELEMETRY_PATH])
    rows = []
    for snap in app[STORE].snapshots.values():
        age = "never" if snap.last_success is None else f"{now - snap.last_success:.0f}s ago"
        containers = len(snap.support.containers) if snap.support else 0
        error = f"{snap.last_error}: {snap.last_error_detail}" if snap.last_error else ""
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (snap.name, snap.url, snap.state, age, containers, snap.polls, error)
            )
            + "</tr>"
        )
    status = app.get(RELOAD_STATUS)
    config = f"<p>Configuration: {html.escape(status())}</p>" if status else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>WhatsApp Support Exporter</title>
<style>body{{font-family:sans-serif}}td,th{{padding:2px 10px;text-align:left}}</style></head>
<body><h1>WhatsApp Support Exporter</h1>
<p>Version {html.escape(__version__)}. Polls <code>/v1/support</code> of each WhatsApp Business API
client on its own schedule and serves the result.</p>
<p><a href="{path}">Metrics</a> · <a href="/sd">Targets (http_sd)</a> ·
<a href="/-/healthy">Health</a> · <a href="/-/ready">Ready</a></p>
{config}
<h2>Targets</h2>
<table><tr><th>target</th><th>URL</th><th>state</th><th>last success</th><th>containers</th>
<th>polls</th><th>last error</th></tr>
{"".join(rows)}
</table></body></html>
"""


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
    store: Store,
    *,
    poller: Poller | None = None,
    exposition: Exposition | None = None,
    telemetry_path: str = "/metrics",
    middlewares: list[Callable[..., Any]] | None = None,
    reload: Reload | None = None,
    reload_status: Callable[[], str] | None = None,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
) -> web.Application:
    """The web application; the poller (if any) and background tasks run for its lifetime.

    ``reload`` given serves ``POST /-/reload`` (``--web.enable-lifecycle``).
    """
    app = web.Application(middlewares=middlewares or [])
    app[STORE] = store
    app[EXPOSITION] = exposition or Exposition(store)
    app[TELEMETRY_PATH] = telemetry_path
    app[READY] = [poller is None]
    app[LANDING] = {}
    if reload_status is not None:
        app[RELOAD_STATUS] = reload_status
    app.cleanup_ctx.append(_refresh_runtime_metrics)
    if poller is not None:

        async def run_poller(app: web.Application) -> AsyncIterator[None]:
            await poller.start()
            tasks = [asyncio.create_task(work()) for work in background]
            app[READY][0] = True
            yield
            app[READY][0] = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await poller.stop()

        app.cleanup_ctx.append(run_poller)
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/sd", service_discovery)
    app.router.add_get("/", landing)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    if reload is not None:
        app[RELOAD] = reload
        app.router.add_post("/-/reload", reload_config)
    return app
