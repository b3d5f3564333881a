"""The fault matrix: every upstream failure is one counted reason, and the target recovers.

Polls are driven by hand (``harness``) so nothing waits for a schedule; the few tests of the
schedule itself run it with intervals of milliseconds and count what the upstream saw.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.collector import DATA_FAMILIES, ERROR_REASONS
from exporter.simulator import Instance, Simulator
from tests.conftest import (
    API_KEY,
    PASSWORD,
    SECRETS,
    USERNAME,
    FakeClock,
    Harness,
    HarnessFactory,
    exporter_app_factory,
    make_settings,
    series,
    wait_for,
)

MiB = 1024 * 1024


def errors(text: str, target: str = "wa") -> dict[str, float]:
    """whatsapp_exporter_poll_errors_total of one target as {reason: count}."""
    out = {}
    for labels, value in series(text, "whatsapp_exporter_poll_errors_total").items():
        if f'target="{target}"' in labels:
            out[labels.split('reason="')[1].rstrip('"}')] = value
    return out


def up(text: str, target: str = "wa") -> float:
    return series(text, "whatsapp_up")[f'{{target="{target}"}}']


def has_data(text: str, target: str = "wa") -> bool:
    return f'whatsapp_socket_connected{{target="{target}"' in text


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Any], Awaitable[str]]]:
    """Factory: serve one aiohttp handler on every path; returns the base URL."""
    servers: list[TestServer] = []

    async def start(handler: Any) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


# -- the matrix: one fault per reason, then healthy again ----------------------------------------


def _set(**faults: Any) -> Callable[[Instance], None]:
    def apply(inst: Instance) -> None:
        for key, value in faults.items():
            setattr(inst.faults, key, value)

    return apply


def _payload(payload: Any) -> Callable[[Instance], None]:
    def apply(inst: Instance) -> None:
        inst.payload = payload

    return apply


FAULTS: list[Any] = [
    pytest.param("timeout", _set(hang=True), {}, id="timeout-hanging-upstream"),
    pytest.param("auth", _set(reject_api_key=True), {}, id="auth-key-rejected-no-login"),
    pytest.param("rate_limited", _set(status=429), {}, id="rate_limited-429"),
    pytest.param("unavailable", _set(status=503), {}, id="unavailable-503"),
    pytest.param("http", _set(status=500), {}, id="http-500"),
    pytest.param("http", _set(status=404), {}, id="http-404"),
    pytest.param("auth", _set(status=403), {}, id="auth-403"),
    pytest.param("invalid_response", _set(body=b"<html>oops</html>"), {}, id="invalid-not-json"),
    pytest.param("invalid_response", _set(body=b"[" * 200_000), {}, id="invalid-nesting-bomb"),
    pytest.param("invalid_response", _set(body=b'{"meta": {}}'), {}, id="invalid-no-support"),
    pytest.param("invalid_response", _set(body=b'{"support": [1]}'), {}, id="invalid-support-list"),
    pytest.param("invalid_response", _set(body=b'"support"'), {}, id="invalid-bare-string"),
    pytest.param(
        "invalid_response",
        _set(body_size=64 * 1024),
        {"max_response_bytes": 16 * 1024},
        id="invalid-over-size-cap",
    ),
]


@pytest.mark.parametrize(("reason", "fault", "settings"), FAULTS)
async def test_each_fault_is_counted_under_its_reason_and_the_target_recovers(
    harness: HarnessFactory, sim: Simulator, reason: str, fault: Any, settings: dict[str, Any]
) -> None:
    inst = sim.add_instance("wa", "single")
    fault(inst)
    h = harness("wa", poll_timeout=0.3, **settings)
    started = time.monotonic()
    await h.poll()
    assert time.monotonic() - started < 1.5
    text = h.metrics()
    assert up(text) == 0
    assert errors(text) == {r: (1.0 if r == reason else 0.0) for r in ERROR_REASONS}
    assert h.snapshot.last_error == reason
    assert not has_data(text)

    inst.faults.__init__()  # type: ignore[misc]  # healthy again
    inst.payload = None
    await h.poll()
    text = h.metrics()
    assert up(text) == 1
    assert has_data(text)
    assert errors(text)[reason] == 1  # a counter: the fault stays counted
    assert series(text, "whatsapp_exporter_polls_total") == {'{target="wa"}': 2.0}


async def test_refused_connection_is_counted_as_connect(harness: HarnessFactory) -> None:
    h = harness("gone", url=f"http://127.0.0.1:{free_port()}")
    await h.poll()
    assert h.snapshot.last_error == "connect"
    assert errors(h.metrics(), "gone")["connect"] == 1


async def test_unresolvable_host_is_counted_as_connect(harness: HarnessFactory) -> None:
    h = harness("nxdomain", url="http://does-not-exist.invalid:9090", poll_timeout=2.0)
    await h.poll()
    assert h.snapshot.last_error in ("connect", "timeout")  # a resolver may not answer at all


async def test_connection_reset_mid_response_is_counted_as_connect_and_recovers(
    harness: HarnessFactory, raw_server: Any
) -> None:
    healthy = {"flag": False}

    async def handler(request: web.Request) -> web.StreamResponse:
        if healthy["flag"]:
            return web.json_response({"support": {"socket_conn": "UP"}})
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b'{"support": {')
        assert request.transport is not None
        request.transport.abort()
        return response

    base = await raw_server(handler)
    h = harness("wa", url=base)
    await h.poll()
    assert h.snapshot.last_error == "connect"
    healthy["flag"] = True
    await h.poll()
    assert h.snapshot.up


async def test_a_body_that_trickles_forever_times_out_within_the_poll_deadline(
    harness: HarnessFactory, raw_server: Any
) -> None:
    """The deadline covers reading the body, not only the wait for headers."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        await response.write(b'{"support": {"lc": "')
        while True:
            await response.write(b"x")
            await asyncio.sleep(0.02)

    base = await raw_server(handler)
    h = harness("wa", url=base, poll_timeout=0.3)
    started = time.monotonic()
    await h.poll()
    assert time.monotonic() - started < 1.0
    assert h.snapshot.last_error == "timeout"


async def test_rejected_login_is_counted_as_auth_and_as_a_failed_login(
    harness: HarnessFactory, sim: Simulator
) -> None:
    sim.add_instance("wa", "single")
    h = harness("wa", api_key=None, username=USERNAME, password="not-the-password")
    await h.poll()
    text = h.metrics()
    assert h.snapshot.last_error == "auth"
    assert 'whatsapp_exporter_logins_total{target="wa",result="failure"} 1' in text
    assert sim.instance("wa").requests["support"] == 0


# -- backoff ---------------------------------------------------------------------------------


async def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets_on_success(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    inst.faults.status = 503
    h = harness("wa", poll_interval=0.01, max_backoff=1.0)
    delays = [await h.poll() for _ in range(12)]
    assert delays[0] == pytest.approx(0.01)
    assert max(delays) <= 1.0
    assert min(delays[-4:]) >= 0.5  # grown to the cap (jitter takes at most half)
    assert len(set(delays[-4:])) == 4  # jittered: a fleet does not retry in lockstep
    inst.faults.status = None
    delay = await h.poll()
    assert h.snapshot.up
    assert 0.0095 <= delay <= 0.0105


@pytest.mark.parametrize("status", [500, 404])
async def test_errors_that_are_not_overload_keep_the_normal_interval(
    harness: HarnessFactory, sim: Simulator, status: int
) -> None:
    sim.add_instance("wa", "single").faults.status = status
    h = harness("wa", poll_interval=0.01, max_backoff=1.0)
    delays = [await h.poll() for _ in range(6)]
    assert max(delays) <= 0.0105


async def _run_schedule(h: Any, seconds: float) -> None:
    task = asyncio.create_task(h.poller.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 429}, id="rate_limited"),
        pytest.param({"status": 503}, id="unavailable"),
        pytest.param({"hang": True}, id="timeout"),
    ],
)
async def test_a_failing_upstream_sees_far_fewer_requests_than_a_healthy_one(
    harness: HarnessFactory, sim: Simulator, fault: dict[str, Any]
) -> None:
    sim.add_instance("healthy", "single")
    failing = sim.add_instance("failing", "single")
    for key, value in fault.items():
        setattr(failing.faults, key, value)
    settings = {"poll_interval": 0.02, "poll_timeout": 0.02, "max_backoff": 0.3}
    polls = [harness("healthy", **settings), harness("failing", **settings)]
    await asyncio.gather(*(_run_schedule(h, 0.8) for h in polls))
    healthy = sim.instance("healthy").requests["support"]
    failed = failing.requests["support"]
    assert healthy >= 15
    assert failed <= 8, f"{failed} requests to a failing upstream vs {healthy} to a healthy one"


async def test_a_rejected_login_is_not_retried_at_every_interval(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    h = harness(
        "wa",
        api_key=None,
        username=USERNAME,
        password="not-the-password",
        poll_interval=0.02,
        max_backoff=0.3,
    )
    await _run_schedule(h, 0.8)
    # 40 intervals went by; backing off 0.02, 0.04, 0.08, 0.16, then ~0.3 leaves a handful
    assert 1 <= inst.requests["login"] <= 8
    assert h.snapshot.logins["failure"] == inst.requests["login"]
    assert inst.requests["support"] == 0


async def test_retry_after_in_seconds_is_honoured(harness: HarnessFactory, sim: Simulator) -> None:
    inst = sim.add_instance("wa", "single")
    inst.faults.status = 429
    inst.faults.retry_after = "42"
    h = harness("wa", poll_interval=0.01, max_backoff=100.0)
    assert await h.poll() == pytest.approx(42.0)
    inst.faults.status = 503
    inst.faults.retry_after = "7"
    assert await h.poll() == pytest.approx(7.0)


async def test_retry_after_as_an_http_date_is_honoured(
    harness: HarnessFactory, sim: Simulator
) -> None:
    clock = FakeClock()
    inst = sim.add_instance("wa", "single")
    inst.faults.status = 503
    inst.faults.retry_after = email.utils.formatdate(clock.now + 120, usegmt=True)
    h = harness("wa", poll_interval=0.01, max_backoff=300.0, clock=clock)
    assert await h.poll() == pytest.approx(120.0, abs=1.0)


async def test_retry_after_never_parks_a_target_past_max_backoff_and_garbage_is_ignored(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    inst.faults.status = 429
    inst.faults.retry_after = str(30 * 86400)
    h = harness("wa", poll_interval=0.01, max_backoff=5.0)
    assert await h.poll() == pytest.approx(5.0)
    for garbage in ("soon, maybe", "\u00b2", "-5", "1e3"):
        inst.faults.retry_after = garbage
        assert await h.poll() <= 5.0
        assert h.snapshot.last_error == "rate_limited"
    assert h.snapshot.errors["rate_limited"] == 5


# -- staleness and churn of containers --------------------------------------------------------


async def test_data_of_a_failing_target_is_withdrawn_once_stale(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    h = harness("wa", stale_after=0.3)
    await h.poll()
    inst.faults.status = 503
    await h.poll()
    text = h.metrics()
    assert up(text) == 0
    assert has_data(text), "data younger than stale-after is still served"
    await wait_for(lambda: not has_data(h.metrics()), within=1.5)
    text = h.metrics()
    assert up(text) == 0
    assert "whatsapp_exporter_last_success_timestamp_seconds" in text
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    for family in DATA_FAMILIES:
        assert not any(line.startswith(family + "{") for line in samples), family
    inst.faults.status = None
    await h.poll()
    assert has_data(h.metrics())


async def test_data_of_a_hanging_target_is_withdrawn_on_time_even_while_polls_back_off(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    h = harness("wa", stale_after=0.3, poll_interval=0.02, poll_timeout=0.1, max_backoff=5.0)
    await h.poll()
    succeeded = time.monotonic()
    inst.faults.hang = True
    task = asyncio.create_task(h.poller.run())
    try:
        await wait_for(lambda: not has_data(h.metrics()), within=1.5)
        assert 0.25 <= time.monotonic() - succeeded <= 1.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_container_that_leaves_the_cluster_leaves_metrics_at_once(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("mc", "multiconnect", masters=2, coreapps=4, shards=4)
    h = harness("mc")
    await h.poll()
    gone = inst.containers.pop(3)
    assert gone.container_id in h.metrics()
    await h.poll()
    text = h.metrics()
    assert gone.container_id not in text
    assert len(series(text, "whatsapp_socket_connected")) == 5


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


# -- logging ---------------------------------------------------------------------------------


async def test_one_log_line_per_state_change_not_per_failed_poll(
    harness: HarnessFactory, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    inst = sim.add_instance("wa", "single")
    h = harness("wa", api_key=API_KEY, username=USERNAME, password=PASSWORD)

    def lines() -> list[str]:
        return [
            r.getMessage() + " " + str(getattr(r, "reason", ""))
            for r in caplog.records
            if r.name.startswith("exporter") and r.levelno >= logging.INFO
        ]

    await h.poll()
    assert lines() == ["target is up "]
    inst.faults.status = 503
    for _ in range(5):
        await h.poll()
    inst.faults.status = 500
    for _ in range(5):
        await h.poll()
    inst.faults.status = None
    for _ in range(5):
        await h.poll()
    assert lines() == [
        "target is up ",
        "target poll failed unavailable",
        "target poll failed http",
        "target is up ",
    ]
    for secret in SECRETS:
        assert secret not in caplog.text


# -- the scrape path ------------------------------------------------------------------------


async def test_scrapes_answer_fast_and_the_healthy_target_never_flickers_while_others_hang(
    aiohttp_client: Any, sim: Simulator, sim_base: str
) -> None:
    sim.add_instance("fine", "single")
    targets = [f"fine={sim_base}/fine"]
    for i in range(10):
        sim.add_instance(f"stuck{i}", "single").faults.hang = True
        targets.append(f"stuck{i}={sim_base}/stuck{i}")
    # stale-after well above the interval: on a loaded machine a 20 ms poll can run late, and
    # the point here is that hanging neighbours never block it
    settings = make_settings(
        targets=targets, api_key=API_KEY, poll_interval=0.02, poll_timeout=5.0, stale_after=1.0
    )
    app, store = exporter_app_factory(settings)
    client = await aiohttp_client(app)
    await wait_for(lambda: store.snapshots["fine"].up)
    slowest = 0.0
    for _ in range(30):
        started = time.monotonic()
        response = await client.get("/metrics")
        text = await response.text()
        slowest = max(slowest, time.monotonic() - started)
        assert response.status == 200
        assert up(text, "fine") == 1
        assert has_data(text, "fine")
        await asyncio.sleep(0.01)
    assert slowest < 0.5
    assert sim.instance("fine").requests["support"] >= 10  # the hangs did not block its polls


async def test_a_redirect_is_an_http_error_and_the_credential_is_not_followed(
    harness: HarnessFactory, raw_server: Any
) -> None:
    seen: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"support": {"socket_conn": "UP"}})

    other = await raw_server(elsewhere)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{other}/v1/support")

    h = harness("wa", url=await raw_server(redirect))
    await h.poll()
    assert h.snapshot.last_error == "http"
    assert seen == []


async def test_a_crashing_poll_costs_one_poll_not_the_target(
    harness: HarnessFactory, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.add_instance("wa", "single")
    h: Harness = harness("wa", poll_interval=0.01)
    real = h.poller.poll_once
    calls = {"n": 0}

    async def flaky() -> float:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")
        return await real()

    monkeypatch.setattr(h.poller, "poll_once", flaky)
    task = asyncio.create_task(h.poller.run())
    try:
        await wait_for(lambda: h.snapshot.up, within=2.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
