"""The exporter's own HTTP endpoints: /metrics, /sd, the landing page, /-/healthy, /-/ready and
/-/reload.

Nothing here waits on an upstream: /metrics serves what the store already holds, and readiness
means "this process serves", never "the WhatsApp client is healthy" (a sidecar's readiness gates
the whole Pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from aiohttp import web

from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.negotiation import choose, wants_gzip
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.web.landing import account_section, landing_page, target_section
from whatsapp_support_exporter.web.server import send_body

EXPOSITION = web.AppKey("exposition", Exposition)
STORE = web.AppKey("store", Store)
READY = web.AppKey("ready", list)  # [bool]: set once the pollers are started
TELEMETRY_PATH = web.AppKey("telemetry_path", str)
# Reload the configuration: None on success, else the error line (``--web.enable-lifecycle``).
Reload = Callable[[str], Awaitable[str | None]]
RELOAD: web.AppKey[Reload] = web.AppKey("reload")
RELOAD_STATUS: web.AppKey[Callable[[], str]] = web.AppKey("reload_status")
LANDING = web.AppKey("landing", dict)  # cached page: {"at": wall time, "body": bytes, "renders"}
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")  # wall time; tests drive it

# The landing page is rendered at most once a second.
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
    """Name, version, links, and a row per target and container, failing ones first.

    Rendered at most once a second whatever the request rate (a fleet changes every few
    milliseconds); between renders every request gets the same bytes.
    """
    app = request.app
    now = app[CLOCK]()
    cache = app[LANDING]
    rendered_at = cache.get("at")
    if rendered_at is None or not 0 <= now - rendered_at < LANDING_CACHE_SECONDS:
        status = app.get(RELOAD_STATUS)
        store = app[STORE]
        sections = [target_section(store, now)]
        if store.accounts:  # without Cloud API accounts the page stays as it was
            sections.append(account_section(store, now))
        page = landing_page(
            sections,
            telemetry_path=app[TELEMETRY_PATH],
            config_status=status() if status else None,
        )
        cache["at"], cache["body"] = now, page.encode()
        cache["renders"] = cache.get("renders", 0) + 1
    return web.Response(body=cache["body"], content_type="text/html", charset="utf-8")


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
    clock: Callable[[], float] = time.time,
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
    app[CLOCK] = clock
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
