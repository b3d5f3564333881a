"""The exporter's own endpoints, as Prometheus, a browser and a kubelet see them."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import replace
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.conftest import API_KEY, exporter_app_factory, make_settings
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.snapshot import TargetSnapshot
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.web.app import create_app


def store_with_one_target() -> Store:
    store = Store(render_target)
    store.update(TargetSnapshot(name="wa<script>", url="https://wa.example:9090", polls=1))
    return store


async def test_metrics_default_to_the_prometheus_text_format(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(store_with_one_target()))
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await response.text()
    assert "# TYPE whatsapp_exporter_polls_total counter" in text
    assert "process_cpu_seconds_total" in text


async def test_metrics_speak_openmetrics_when_asked(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(store_with_one_target()))
    response = await client.get(
        "/metrics",
        headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"},
    )
    assert response.headers["Content-Type"].startswith(
        "application/openmetrics-text; version=1.0.0"
    )
    text = await response.text()
    assert text.endswith("# EOF\n")
    names = {family.name for family in text_string_to_metric_families(text)}  # type: ignore[no-untyped-call]
    assert {"whatsapp_up", "whatsapp_exporter_polls", "process_cpu_seconds"} <= names


async def test_gzip_is_one_valid_gzip_member_with_the_same_content(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(store_with_one_target()))
    response = await client.get(
        "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert response.headers["Content-Encoding"] == "gzip"
    raw = await response.read()
    # a strict single-member decoder (as many HTTP clients use) must read all of it
    decoder = zlib.decompressobj(wbits=31)
    text = decoder.decompress(raw) + decoder.flush()
    assert decoder.eof and not decoder.unused_data
    assert text == gzip.decompress(raw)
    assert b'whatsapp_up{target="wa<script>"} 0' in text
    assert b"process_cpu_seconds_total" in text


async def test_no_gzip_when_the_client_refuses_it(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(store_with_one_target()))
    response = await client.get("/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in response.headers


async def test_landing_page_names_the_exporter_links_metrics_and_escapes_target_names(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(create_app(store_with_one_target()))
    page = await (await client.get("/")).text()
    assert "WhatsApp Support Exporter" in page
    assert '<a href="/metrics">' in page
    assert "wa&lt;script&gt;" in page and "<script>" not in page


async def test_health_and_readiness_answer_without_any_upstream(aiohttp_client: Any) -> None:
    settings = make_settings(targets=["dead=http://127.0.0.1:9"], api_key=API_KEY)
    app, _ = exporter_app_factory(settings)
    client = await aiohttp_client(app)
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 200


async def test_custom_telemetry_path_serves_metrics(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(store_with_one_target(), telemetry_path="/wa/metrics"))
    assert (await client.get("/wa/metrics")).status == 200
    assert (await client.get("/metrics")).status == 404


async def test_scrape_reflects_a_changed_snapshot_and_only_then(aiohttp_client: Any) -> None:
    store = store_with_one_target()
    client = await aiohttp_client(create_app(store))
    first = await (await client.get("/metrics")).text()
    generation = store.generation
    again = await (await client.get("/metrics")).text()
    assert store.generation == generation  # a scrape changes nothing
    assert first.split("# HELP process")[0] == again.split("# HELP process")[0]
    store.update(replace(store.snapshots["wa<script>"], polls=2))
    after = await (await client.get("/metrics")).text()
    assert 'whatsapp_exporter_polls_total{target="wa<script>"} 2' in after


def test_a_scrape_with_nothing_changed_serves_the_cached_body_without_rendering() -> None:
    from whatsapp_support_exporter.output.exposition import Exposition

    store = store_with_one_target()
    exposition = Exposition(store)
    for gzip_wanted in (False, True):
        first = exposition.render(openmetrics=True, gzip=gzip_wanted)
        assert exposition.render(openmetrics=True, gzip=gzip_wanted) is first
    exposition.refresh_runtime()  # what the app does about once a second
    assert exposition.render(openmetrics=True, gzip=True) is not first
