"""Hostile upstreams: answers built to cost memory, forge series or log lines, or confuse the
HTTP client. Each fails one poll with one counted reason (or is tolerated), at a bounded cost,
and never holds up a healthy target beside it.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import io
import logging
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from aiohttp import web
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.conftest import (
    API_KEY,
    PASSWORD,
    SECRETS,
    USERNAME,
    Harness,
    HarnessFactory,
    MiB,
    make_settings,
    poll_errors,
    series,
    wait_for,
)
from tests.hostile import (
    colliding_keys_body,
    huge_number_body,
    huge_shards_body,
    many_containers_body,
    start_raw_server,
)
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.cli.logs import LogfmtFormatter
from whatsapp_support_exporter.fleet.config import load_targets
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.errors import Reason


def sample_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def poll_beside(hostile: Harness, healthy: Harness) -> tuple[float, list[float]]:
    """Poll the hostile target once while the healthy one polls back to back.

    Returns the hostile poll's peak traced memory and the healthy polls' latencies (seconds).
    """
    latencies: list[float] = []
    done = asyncio.Event()

    async def keep_polling() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await healthy.poll()
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)

    background = asyncio.create_task(keep_polling())
    await asyncio.sleep(0.05)
    tracemalloc.start()
    try:
        await hostile.poll()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await asyncio.sleep(0.05)
        done.set()
        await background
    return peak, latencies


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: many_containers_body(100_000), id="100000-containers"),
        pytest.param(lambda: huge_shards_body(1500, 0, 1022), id="1500x1023-shards"),
    ],
)
async def test_an_answer_past_the_series_limit_fails_cheaply_and_the_healthy_target_goes_on(
    harness: HarnessFactory, sim: Simulator, body: Callable[[], bytes]
) -> None:
    sim.add_instance("ok")
    sim.add_instance("wa").faults.body = body()
    healthy = harness("ok")
    hostile = harness("wa", max_response_bytes=16 * MiB)

    peak, latencies = await poll_beside(hostile, healthy)

    assert hostile.snapshot.last_error is Reason.INVALID_RESPONSE
    assert "--poll.max-series" in hostile.snapshot.last_error_detail
    assert poll_errors(hostile.metrics(), "wa")["invalid_response"] == 1
    assert peak < 64 * MiB, f"peak {peak / MiB:.1f} MiB for one poll"
    assert healthy.snapshot.up and len(latencies) >= 2
    assert max(latencies) < 0.5, f"healthy polls took up to {max(latencies):.3f}s"


async def test_colliding_container_keys_export_unique_label_sets_that_openmetrics_accepts(
    harness: HarnessFactory, sim: Simulator
) -> None:
    sim.add_instance("wa").faults.body = colliding_keys_body()
    h = harness("wa")
    await h.poll()
    assert h.snapshot.up
    lines = sample_lines(h.metrics())
    labelsets = [line.rpartition(" ")[0] for line in lines]
    assert len(labelsets) == len(set(labelsets))
    body = h.exposition.render(openmetrics=True).decode()
    families = list(text_string_to_metric_families(body))  # type: ignore[no-untyped-call]
    assert any(f.name == "whatsapp_socket_state" for f in families)  # parsed: no duplicate
    invalid = series(h.metrics(), "whatsapp_exporter_invalid_fields_total")
    assert invalid['{target="wa",field="container"}'] == 1


async def test_new_free_space_names_every_poll_do_not_grow_the_series_count(
    harness: HarnessFactory, sim: Simulator
) -> None:
    sim.add_instance("wa").faults.new_free_space_keys = 20
    h = harness("wa")
    counts = []
    for _ in range(6):
        await h.poll()
        assert h.snapshot.up
        counts.append(len(sample_lines(h.metrics())))
    assert counts[1:] == [counts[1]] * 5


@pytest.mark.parametrize(
    "retry_after",
    [
        "²",
        "-5",
        "99999999999999999999",
        email.utils.formatdate(time.time() + 7 * 86400, usegmt=True),
    ],
    ids=["superscript-two", "negative", "huge", "http-date-next-week"],
)
async def test_any_retry_after_counts_as_rate_limited_and_waits_at_most_max_backoff(
    harness: HarnessFactory, sim: Simulator, retry_after: str
) -> None:
    inst = sim.add_instance("wa")
    inst.faults.status = 429
    inst.faults.retry_after = retry_after
    h = harness("wa", max_backoff=0.2)
    for _ in range(3):
        delay = await h.poll()
        assert 0 < delay <= 0.2
    assert poll_errors(h.metrics(), "wa")["rate_limited"] == 3


async def test_a_login_token_with_cr_lf_is_an_invalid_response_and_never_logged(
    harness: HarnessFactory, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    token = "forged-token\r\nX-Injected: 1"
    sim.add_instance("wa").faults_for("login").login_token = token
    h = harness("wa", api_key=None, username=USERNAME, password=PASSWORD)
    with caplog.at_level(logging.DEBUG):
        await h.poll()
        await h.poll()
    assert h.snapshot.last_error is Reason.INVALID_RESPONSE
    assert poll_errors(h.metrics(), "wa")["invalid_response"] == 2
    text = caplog.text + h.metrics() + h.snapshot.last_error_detail
    for secret in (*SECRETS, "forged-token", "X-Injected"):
        assert secret not in text
    assert sim.instance("wa").requests["support"] == 0  # the token was never sent


async def test_a_cookie_set_by_one_upstream_is_never_sent_back_to_any(
    sim_base: str, sim: Simulator
) -> None:
    for name in ("a", "b"):
        sim.add_instance(name).faults.set_cookie = True
    settings = make_settings(
        targets=[f"a={sim_base}/a", f"b={sim_base}/b"], api_key=API_KEY, poll_interval=0.05
    )
    poller = Poller(settings, Store(render_target), load_targets(settings))
    await poller.start()
    try:
        await wait_for(lambda: all(i.requests["support"] >= 4 for i in sim.instances.values()))
    finally:
        await poller.stop()
    assert [i.cookies_received for i in sim.instances.values()] == [0, 0]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("garbage_status", Reason.INVALID_RESPONSE),
        ("negative_content_length", Reason.INVALID_RESPONSE),
        ("corrupt_gzip", Reason.INVALID_RESPONSE),
        ("silent", Reason.TIMEOUT),
    ],
)
async def test_a_malformed_http_answer_fails_with_its_reason(
    harness: HarnessFactory, kind: str, reason: Reason
) -> None:
    async with await start_raw_server(kind) as raw:
        h = harness("wa", url=raw.url, poll_timeout=0.3)
        started = time.monotonic()
        await h.poll()
        assert time.monotonic() - started < 1.0
    assert h.snapshot.last_error is reason
    assert poll_errors(h.metrics(), "wa")[reason] == 1


async def test_a_number_past_any_float_in_a_field_we_do_not_read_keeps_the_target_up(
    harness: HarnessFactory, sim: Simulator
) -> None:
    sim.add_instance("wa").faults.body = huge_number_body()
    h = harness("wa")
    await h.poll()
    assert h.snapshot.up
    assert series(h.metrics(), "whatsapp_socket_connected") == {'{target="wa"}': 1.0}


async def test_upstream_text_with_cr_and_esc_is_escaped_in_debug_logfmt_lines(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa")
    inst.payload = {
        "socket_conn": "UP",
        "free_space_evil\r\x1b[2Jlevel=error": "not a number",
        "schema": {"evil\r\x1b[31m": "x"},
        "version": 5,
    }
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        h = harness("wa")
        await h.poll()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert h.snapshot.up
    out = stream.getvalue()
    assert "dropped upstream fields" in out
    assert "\r" not in out and "\x1b" not in out
    assert all(line.startswith("ts=") for line in out.splitlines())


def test_logfmt_escapes_control_characters_so_a_value_cannot_forge_a_line() -> None:
    record = logging.makeLogRecord(
        {"msg": "x", "levelname": "DEBUG", "name": "t", "fields": "a\r\nlevel=error \x1b[2J"}
    )
    line = LogfmtFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert r"fields=" in line and r"\u001b" in line


# -- bounded memory -------------------------------------------------------------------------


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


class PeakRss:
    """The highest RSS seen while the block runs, sampled every few milliseconds in a thread."""

    def __enter__(self) -> PeakRss:
        self.before = _rss()
        self.peak = self.before
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._done.wait(0.002):
            self.peak = max(self.peak, process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def grown(self) -> int:
        return self.peak - self.before


async def test_a_50mb_body_is_refused_without_growing_memory(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    h = harness("wa")
    await h.poll()  # warm up the session and the parser
    inst.faults.body_size = 50 * 1000 * 1000
    started = time.monotonic()
    with PeakRss() as rss:
        await h.poll()
    elapsed = time.monotonic() - started
    assert h.snapshot.last_error == "invalid_response"
    assert rss.grown < 8 * MiB, f"RSS grew by {rss.grown / MiB:.1f} MiB"
    assert elapsed < 1.0


async def test_a_50mb_chunked_body_without_length_is_cut_off_while_streaming(
    harness: HarnessFactory, raw_server: Any
) -> None:
    chunk = b" " * 65536
    sent = {"bytes": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(b'{"support": {"lc": "')
            while sent["bytes"] < 50 * 1000 * 1000:
                await response.write(chunk)
                sent["bytes"] += len(chunk)
            await response.write(b'"}}')
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    base = await raw_server(handler)
    h = harness("wa", url=base)
    with PeakRss() as rss:
        await h.poll()
    assert h.snapshot.last_error == "invalid_response"
    assert "exceeds" in h.snapshot.last_error_detail
    assert rss.grown < 8 * MiB, f"RSS grew by {rss.grown / MiB:.1f} MiB"
    assert sent["bytes"] < 20 * MiB, "the exporter kept reading after the cap"
