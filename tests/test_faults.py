"""The fault matrix: every upstream failure is one counted reason, and the target recovers.

Polls are driven by hand (``harness``) so nothing waits for a schedule; the few tests of the
schedule itself run it with intervals of milliseconds and count what the upstream saw.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import (
    API_KEY,
    PASSWORD,
    SECRETS,
    USERNAME,
    Harness,
    HarnessFactory,
    exporter_app_factory,
    free_port,
    has_data,
    make_settings,
    poll_errors,
    series,
    up,
    wait_for,
)
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_api_simulator.onprem_model import Instance
from whatsapp_support_exporter.output.families import ERROR_REASONS

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
    assert poll_errors(text) == {r: (1.0 if r == reason else 0.0) for r in ERROR_REASONS}
    assert h.snapshot.last_error == reason
    assert not has_data(text)

    inst.faults.__init__()  # type: ignore[misc]  # healthy again
    inst.payload = None
    await h.poll()
    text = h.metrics()
    assert up(text) == 1
    assert has_data(text)
    assert poll_errors(text)[reason] == 1  # a counter: the fault stays counted
    assert series(text, "whatsapp_exporter_polls_total") == {'{target="wa"}': 2.0}


async def test_refused_connection_is_counted_as_connect(harness: HarnessFactory) -> None:
    h = harness("gone", url=f"http://127.0.0.1:{free_port()}")
    await h.poll()
    assert h.snapshot.last_error == "connect"
    assert poll_errors(h.metrics(), "gone")["connect"] == 1


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
            if r.name.startswith("whatsapp_support_exporter") and r.levelno >= logging.INFO
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


async def test_our_own_fault_is_counted_as_internal_not_the_upstreams_and_logged_once(
    harness: HarnessFactory,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.add_instance("wa", "single")
    h: Harness = harness("wa")

    async def buggy(**_: Any) -> Any:
        raise KeyError("a bug of ours")

    monkeypatch.setattr(h.client, "attempt", buggy)
    with caplog.at_level(logging.INFO, logger="whatsapp_support_exporter"):
        await h.poll()
        await h.poll()
    text = h.metrics()
    assert poll_errors(text) == {r: (2.0 if r == "internal" else 0.0) for r in ERROR_REASONS}
    assert h.snapshot.last_error == "internal"
    logged = [r for r in caplog.records if r.name.startswith("whatsapp_support_exporter")]
    assert [(r.levelno, r.getMessage()) for r in logged] == [
        (logging.ERROR, "poll failed inside the exporter")
    ]
    assert logged[0].exc_info is not None and "a bug of ours" in caplog.text

    monkeypatch.undo()
    await h.poll()
    assert up(h.metrics()) == 1


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
