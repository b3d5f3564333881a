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
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from whatsapp_support_exporter import __version__
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.negotiation import choose, wants_gzip
from whatsapp_support_exporter.output.status import (
    ACCOUNTS,
    STATES,
    TARGETS,
    Kind,
    Row,
    account_snapshot_row,
    snapshot_rows,
    worst_first,
)
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
        cache["at"], cache["body"] = now, _landing_page(app, now).encode()
        cache["renders"] = cache.get("renders", 0) + 1
    return web.Response(body=cache["body"], content_type="text/html", charset="utf-8")


@dataclass(frozen=True)
class Section:
    """One table of the landing page: a kind of row (targets; Cloud API accounts next), its
    rows, and the columns only the page shows (by row name: how long ago, how many polls)."""

    kind: Kind
    rows: list[Row]
    extra_columns: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _target_section(store: Store, now: float) -> Section:
    rows: list[Row] = []
    extra: dict[str, tuple[str, ...]] = {}
    for snap in store.snapshots.values():
        rows.extend(snapshot_rows(snap, now))
        age = "never" if snap.last_success is None else f"{now - snap.last_success:.0f}s ago"
        extra[snap.name] = (age, str(snap.polls), snap.url)
    return Section(TARGETS, worst_first(rows), ("last success", "polls", "URL"), extra)


def _section_html(section: Section) -> str:
    kind = section.kind
    counts = Counter(row.state for row in section.rows)
    summary = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]) or "none"
    header = "".join(f"<th>{_e(c)}</th>" for c in (*kind.header, *section.extra_columns))
    lines = []
    for row in section.rows:
        cells = "".join(f"<td>{_e(c)}</td>" for c in row.line[3:])
        extra = "".join(f"<td>{_e(c)}</td>" for c in section.extra.get(row.name, ()))
        lines.append(
            f'<tr class="{row.state}"><td>{_e(row.name)}</td><td>{_e(row.part)}</td>'
            f'<td class="state">{row.state}</td>{cells}{extra}</tr>'
        )
    return (
        f"<h2>{_e(kind.title)}</h2>\n<p>{_e(summary)} ({len(section.rows)} rows,"
        " worst first)</p>\n"
        f"<table><tr>{header}</tr>\n" + "\n".join(lines) + "\n</table>\n"
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


# Row colours by state; the state's word is in its own cell, so nothing depends on colour.
_STYLE = (
    "body{font-family:sans-serif}td,th{padding:2px 10px;text-align:left}"
    "tr.down,tr.critical{background:#f8d0d0}tr.warning{background:#fbeeb8}"
    "tr.starting{background:#e8e8e8}tr.up{background:#d8f0d8}td.state{font-weight:bold}"
)


def _landing_page(app: web.Application, now: float) -> str:
    path = _e(app[TELEMETRY_PATH])
    status = app.get(RELOAD_STATUS)
    config = f"<p>Configuration: {_e(status())}</p>" if status else ""
    sections = "".join(_section_html(section) for section in _sections(app, now))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>WhatsApp Support Exporter</title>
<style>{_STYLE}</style></head>
<body><h1>WhatsApp Support Exporter</h1>
<p>Version {_e(__version__)}. Polls <code>/v1/support</code> of each WhatsApp Business API
client on its own schedule and serves the result. States, worst first: down (the last poll
failed), critical (build expired or expiring within 3 days, socket or gateway not connected),
warning (build expiring within 14 days, under 2 GiB free, an optional endpoint failing),
starting, up. This page is refreshed at most once a second.</p>
<p><a href="{path}">Metrics</a> · <a href="/sd">Targets (http_sd)</a> ·
<a href="/-/healthy">Health</a> · <a href="/-/ready">Ready</a></p>
{config}
{sections}</body></html>
"""


def _sections(app: web.Application, now: float) -> list[Section]:
    store = app[STORE]
    sections = [_target_section(store, now)]
    if store.accounts:  # without Cloud API accounts the page stays as it was
        sections.append(_account_section(store, now))
    return sections


def _account_section(store: Store, now: float) -> Section:
    rows: list[Row] = []
    extra: dict[str, tuple[str, ...]] = {}
    for snap in store.accounts.values():
        rows.append(account_snapshot_row(snap))
        age = "never" if snap.last_success is None else f"{now - snap.last_success:.0f}s ago"
        extra[snap.name] = (age, str(snap.polls))
    return Section(ACCOUNTS, worst_first(rows), ("last success", "polls"), extra)


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
