"""The Cloud API side against an independent Graph fake (tests/metagraph.py) when answers go
wrong: Graph error codes of each class, broken bodies, a hang, Retry-After and the usage header,
a token rotated while running, and an account failing beside an On-Premises target."""

from __future__ import annotations

import asyncio
import gzip
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from tests.cloud_hostile_kit import Exporter, errors, series, value
from tests.conftest import API_KEY, make_settings, wait_for
from tests.metagraph import ROTATED, TOKEN, WABA, MetaGraph, graph_error, usage_header
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.cli.logs import LogfmtFormatter
from whatsapp_support_exporter.fleet.poller import Poller, TargetPoller
from whatsapp_support_exporter.output.cloud_families import render_account
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.onprem.target import Credentials, Target
from whatsapp_support_exporter.web.app import create_app


def answer(status: int, body: bytes, content_type: str = "application/json", **headers: str):  # type: ignore[no-untyped-def]
    """A fault that answers every request with this."""

    async def fault(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type=content_type, headers=headers)

    return fault


GRAPH_ERRORS = [
    (401, 190, 463, "auth"),  # token expired
    (400, 190, None, "auth"),
    (403, 10, None, "auth"),
    (403, 200, None, "auth"),
    (403, 299, None, "auth"),
    (400, 4, None, "rate_limited"),
    (400, 17, None, "rate_limited"),
    (400, 32, None, "rate_limited"),
    (400, 613, None, "rate_limited"),
    (400, 80007, None, "rate_limited"),
    (400, 80008, None, "rate_limited"),
    (500, 1, None, "unavailable"),
    (500, 2, None, "unavailable"),
    (400, 100, 33, "http"),
    (500, 131000, None, "http"),
]


@pytest.mark.parametrize(("status", "code", "subcode", "reason"), GRAPH_ERRORS)
async def test_a_graph_error_code_gives_its_class_as_the_poll_error_reason(
    exporter: Exporter, meta: MetaGraph, status: int, code: int, subcode: int | None, reason: str
) -> None:
    poller = exporter.account(meta.base)
    await poller.poll_once()
    meta.fault = answer(status, graph_error(code, subcode))
    await poller.poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 0
    assert errors(text) == {reason: 1}
    assert value(text, "whatsapp_cloud_phone_number_status", status="CONNECTED") == 1
    assert f"Graph error {code}" in poller.snapshot.last_error_detail


@pytest.mark.parametrize(
    ("code", "reason"), [(190, "auth"), (80007, "rate_limited"), (2, "unavailable")]
)
async def test_an_error_body_answered_with_200_is_a_failed_poll(
    exporter: Exporter, meta: MetaGraph, code: int, reason: str
) -> None:
    pretty = orjson.dumps(orjson.loads(graph_error(code)), option=orjson.OPT_INDENT_2)
    meta.fault = answer(200, b"\n  " + pretty)
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 0
    assert errors(text) == {reason: 1}


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", "http"),
        (503, b"<html><body>Service Unavailable</body></html>", "unavailable"),
        (401, b"<html>Unauthorized</html>", "auth"),
        (429, b"Too Many Requests", "rate_limited"),
        (200, b"<!DOCTYPE html><html>Sorry, something went wrong.</html>", "invalid_response"),
        (200, b'{"data": [{"id": "106540352200001", "status": "CONNE', "invalid_response"),
        (200, b"[]", "invalid_response"),
        (200, b"", "invalid_response"),
    ],
    ids=[
        "html-502",
        "html-503",
        "html-401",
        "plain-429",
        "html-200",
        "truncated",
        "array",
        "empty",
    ],
)
async def test_an_answer_without_a_graph_error_is_classified_by_its_status(
    exporter: Exporter, meta: MetaGraph, status: int, body: bytes, reason: str
) -> None:
    meta.fault = answer(status, body, "text/html" if body.startswith(b"<") else "application/json")
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 0
    assert errors(text) == {reason: 1}


@pytest.mark.parametrize("content_type", ["text/javascript", "text/plain", "application/json"])
async def test_json_is_read_whatever_content_type_graph_names(
    exporter: Exporter, meta: MetaGraph, content_type: str
) -> None:
    meta.content_type = content_type
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1


async def test_a_gzip_answer_is_read(exporter: Exporter, meta: MetaGraph) -> None:
    async def gzipped(request: web.Request) -> web.StreamResponse | None:
        meta.fault = None
        plain = await meta.handle(request)
        meta.fault = gzipped
        assert isinstance(plain, web.Response) and plain.body is not None
        return web.Response(
            body=gzip.compress(bytes(plain.body)),  # type: ignore[arg-type]
            status=plain.status,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    meta.fault = gzipped
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1
    assert value(text, "whatsapp_cloud_phone_number_status", status="CONNECTED") == 1


async def test_a_huge_answer_fails_the_poll_without_being_read_whole(
    exporter: Exporter, meta: MetaGraph
) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"data": [' + b'{"id": "1"},' * 10)
        for _ in range(200):  # 200 x 64 KiB with no Content-Length
            await resp.write(b" " * 65536)
        return resp

    meta.fault = huge
    await exporter.account(meta.base, max_response_bytes=1024 * 1024).poll_once()
    text = await exporter.metrics()
    assert errors(text) == {"invalid_response": 1}


async def test_a_graph_api_that_hangs_fails_the_poll_at_the_deadline(
    exporter: Exporter, meta: MetaGraph
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    meta.fault = hang
    await exporter.account(meta.base, poll_timeout=0.3).poll_once()
    text = await exporter.metrics()
    assert errors(text) == {"timeout": 1}


async def test_retry_after_of_an_unavailable_graph_is_waited(
    exporter: Exporter, meta: MetaGraph
) -> None:
    meta.fault = answer(503, b"", "text/plain", **{"Retry-After": "40"})
    poller = exporter.account(meta.base, interval=10.0, max_backoff=600.0)
    delay = await poller.poll_once()
    assert 40 <= delay <= 600


async def test_the_time_to_regain_access_is_waited_up_to_the_longest_backoff(
    exporter: Exporter, meta: MetaGraph
) -> None:
    meta.usage = usage_header(100, regain=7)
    meta.fault = answer(400, graph_error(80007), **{"X-Business-Use-Case-Usage": meta.usage})
    waits = exporter.account(meta.base, interval=10.0, max_backoff=900.0)
    assert await waits.poll_once() == pytest.approx(7 * 60)
    capped = exporter.account(meta.base, name="capped", interval=10.0, max_backoff=120.0)
    assert await capped.poll_once() == pytest.approx(120)
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_api_usage_ratio", kind="call_count") == 1.0


async def test_the_usage_header_as_graph_sends_it_is_exported_as_ratios(
    exporter: Exporter, meta: MetaGraph
) -> None:
    meta.usage = usage_header(28, cputime=25, total_time=31)
    poller = exporter.account(meta.base, interval=60.0)
    delay = await poller.poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_api_usage_ratio", kind="call_count") == 0.28
    assert value(text, "whatsapp_cloud_api_usage_ratio", kind="total_cputime") == 0.25
    assert value(text, "whatsapp_cloud_api_usage_ratio", kind="total_time") == 0.31
    assert delay < 2 * 60
    meta.usage = usage_header(95)
    assert await poller.poll_once() >= 2 * 60  # near the limit: a poll is skipped


@pytest.mark.parametrize(
    "header", ["{not json", '{"1": "x"}', "[]", '{"1": [{"call_count": "lots"}]}']
)
async def test_a_malformed_usage_header_costs_nothing_but_its_series(
    exporter: Exporter, meta: MetaGraph, header: str
) -> None:
    meta.usage = header
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1
    assert series(text, "whatsapp_cloud_api_usage_ratio") == {}


async def test_a_rotated_token_file_is_used_at_the_next_poll_and_never_shown(
    exporter: Exporter, meta: MetaGraph, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    poller = exporter.account(meta.base, token_file=token_file)
    await poller.poll_once()
    token_file.write_text(ROTATED + "\n")
    meta.tokens = {ROTATED}  # the old one is revoked
    await poller.poll_once()
    assert [r.authorization for r in meta.requests[-2:]] == [f"Bearer {ROTATED}"] * 2
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1
    assert errors(text) == {}
    meta.tokens = set()  # now this one is revoked too: the whole account goes dark
    await poller.poll_once()
    text = await exporter.metrics()
    assert errors(text) == {"auth": 1}
    shown = "\n".join(
        [
            text,
            await exporter.landing(),
            poller.snapshot.last_error_detail,
            *(LogfmtFormatter().format(record) for record in caplog.records),
        ]
    )
    assert TOKEN not in shown and ROTATED not in shown
    assert "harbour" in shown


async def test_a_running_exporter_uses_a_rewritten_token_file_at_its_next_poll(
    meta: MetaGraph, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    account = CloudAccount(
        "harbour", WABA, graph_url=meta.base, interval=0.1, token_file=token_file
    )
    store = Store(render_target, render_account)
    poller = Poller(make_settings(), store, [], [account])
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(store, poller=poller), host="127.0.0.1")
    )
    await client.start_server()
    try:
        await wait_for(lambda: any(r.authorization == f"Bearer {TOKEN}" for r in meta.requests))
        token_file.write_text(ROTATED + "\n")
        meta.tokens = {ROTATED}
        seen = len(meta.requests)
        await wait_for(
            lambda: any(r.authorization == f"Bearer {ROTATED}" for r in meta.requests[seen:])
        )
        await wait_for(
            lambda: store.accounts["harbour"].up if "harbour" in store.accounts else False
        )
        resp = await client.get("/metrics")
        text = await resp.text()
    finally:
        await client.close()
    assert value(text, "whatsapp_cloud_up", account="harbour") == 1
    assert TOKEN not in text and ROTATED not in text


async def test_an_account_and_an_on_premises_target_never_touch_each_others_series(
    exporter: Exporter, meta: MetaGraph, sim: Simulator, sim_base: str
) -> None:
    instance = sim.add_instance("wa", "single")
    target = Target(
        name="wa", url=f"{sim_base}/wa", credentials=Credentials(api_key=SecretStr(API_KEY))
    )
    onprem = TargetPoller(
        target, exporter.session, exporter.store, make_settings(), exporter.budget
    )
    exporter.pollers.append(onprem)  # type: ignore[arg-type]
    cloud = exporter.account(meta.base, name="wa")  # an account may share a target's name
    await asyncio.gather(onprem.poll_once(), cloud.poll_once())
    both_up = await exporter.metrics()

    def of_target(text: str) -> list[str]:
        return sorted(
            line
            for line in text.splitlines()
            if line.startswith("whatsapp_")
            and not line.startswith(("whatsapp_cloud", "whatsapp_exporter_cloud"))
            and 'target="wa"' in line
            and "duration" not in line
            and "timestamp" not in line
        )

    def of_account(text: str) -> list[str]:
        return sorted(
            line
            for line in text.splitlines()
            if line.startswith("whatsapp_cloud") and "usage" not in line
        )

    assert value(both_up, "whatsapp_up", target="wa") == 1
    assert len(of_target(both_up)) > 10 and len(of_account(both_up)) > 10
    assert value(both_up, "whatsapp_cloud_up", account="wa") == 1
    meta.fault = answer(401, graph_error(190, 463))
    await asyncio.gather(onprem.poll_once(), cloud.poll_once())
    cloud_down = await exporter.metrics()
    assert value(cloud_down, "whatsapp_cloud_up", account="wa") == 0
    assert of_target(cloud_down) == [
        line.replace('_polls_total{target="wa"} 1', '_polls_total{target="wa"} 2')
        for line in of_target(both_up)
    ]
    meta.fault = None
    instance.faults.status = 500
    await asyncio.gather(onprem.poll_once(), cloud.poll_once())
    target_down = await exporter.metrics()
    assert value(target_down, "whatsapp_up", target="wa") == 0
    assert value(target_down, "whatsapp_cloud_up", account="wa") == 1
    assert [
        line for line in of_account(target_down) if "poll" not in line and "_up{" not in line
    ] == [line for line in of_account(both_up) if "poll" not in line and "_up{" not in line]
    assert errors(target_down, "wa") == {"auth": 1}
