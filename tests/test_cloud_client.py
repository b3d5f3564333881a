"""The Graph API client: one attempt, every page on the same host, Graph error codes as reasons,
the usage header, the token read at every attempt and never shown."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from tests.cloudgraph import TOKEN, WABA_ID, FakeGraph, number, serve_graph
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.cloud.client import MAX_PAGES, CloudAnswer, CloudClient
from whatsapp_support_exporter.upstream.errors import PollError, Reason
from whatsapp_support_exporter.upstream.http import new_session


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    session = new_session(8, 5.0)
    yield session
    await session.close()


def client(session: aiohttp.ClientSession, graph: FakeGraph, **overrides: Any) -> CloudClient:
    account_fields: dict[str, Any] = {
        "name": "acme",
        "waba_id": WABA_ID,
        "graph_url": graph.base,
        "token": SecretStr(TOKEN),
    }
    options: dict[str, Any] = {"timeout": 2.0, "max_response_bytes": 1024 * 1024}
    for key, value in overrides.items():
        (account_fields if key in CloudAccount.__dataclass_fields__ else options)[key] = value
    return CloudClient(session, CloudAccount(**account_fields), **options)


async def failure(c: CloudClient) -> PollError:
    with pytest.raises(PollError) as caught:
        await c.attempt()
    return caught.value


async def test_the_account_and_every_page_of_numbers_are_asked_with_the_token(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    graph.numbers = [number(i) for i in range(250)]
    answer = await client(session, graph).attempt()
    assert len(answer.numbers) == 250
    assert answer.pages == 3
    first, second = graph.requests[0], graph.requests[1]
    assert first.path == f"/v24.0/{WABA_ID}"
    assert first.query["fields"] == (
        "name,health_status,account_review_status,business_verification_status"
    )
    assert second.path == f"/v24.0/{WABA_ID}/phone_numbers"
    assert second.query["limit"] == "100"
    assert "platform_type" in second.query["fields"].split(",")
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in graph.requests)
    assert len(graph.requests) == 4


async def test_the_api_version_prefixes_every_path(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    await client(session, graph, api_version="v25.0").attempt()
    assert all(r.path.startswith("/v25.0/") for r in graph.requests)


async def test_endless_pages_fail_the_poll_after_twenty(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    graph.endless = True
    err = await failure(client(session, graph))
    assert err.reason is Reason.INVALID_RESPONSE
    assert "20 pages" in err.detail
    assert len(graph.requests) == 1 + MAX_PAGES


async def test_twenty_pages_are_fine(session: aiohttp.ClientSession, graph: FakeGraph) -> None:
    graph.page_size = 5
    graph.numbers = [number(i) for i in range(5 * MAX_PAGES)]
    answer = await client(session, graph).attempt()
    assert (answer.pages, len(answer.numbers)) == (MAX_PAGES, 5 * MAX_PAGES)


async def test_a_next_page_on_another_host_is_not_followed(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    other, server = await serve_graph()
    try:
        graph.numbers = [number(i) for i in range(150)]
        graph.next_base = other.base
        err = await failure(client(session, graph))
    finally:
        await server.close()
    assert err.reason is Reason.INVALID_RESPONSE
    assert "another host" in err.detail
    assert other.requests == []
    assert other.base not in err.detail


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (401, 190, Reason.AUTH),
        (403, 10, Reason.AUTH),
        (400, 102, Reason.AUTH),
        (403, 200, Reason.AUTH),
        (403, 294, Reason.AUTH),
        (400, 4, Reason.RATE_LIMITED),
        (400, 17, Reason.RATE_LIMITED),
        (400, 32, Reason.RATE_LIMITED),
        (400, 613, Reason.RATE_LIMITED),
        (400, 80007, Reason.RATE_LIMITED),
        (400, 80008, Reason.RATE_LIMITED),
        (500, 1, Reason.UNAVAILABLE),
        (500, 2, Reason.UNAVAILABLE),
        (400, 100, Reason.HTTP),
        (400, 131000, Reason.HTTP),
    ],
)
async def test_a_graph_error_code_gives_the_reason(
    session: aiohttp.ClientSession, graph: FakeGraph, status: int, code: int, reason: Reason
) -> None:
    graph.error = (status, {"error": {"message": "m", "type": "OAuthException", "code": code}})
    err = await failure(client(session, graph))
    assert err.reason is reason
    assert f"Graph error {code}" in err.detail


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, Reason.AUTH),
        (403, Reason.AUTH),
        (429, Reason.RATE_LIMITED),
        (503, Reason.UNAVAILABLE),
        (500, Reason.HTTP),
        (404, Reason.HTTP),
    ],
)
async def test_without_an_error_body_the_http_status_gives_the_reason(
    session: aiohttp.ClientSession, graph: FakeGraph, status: int, reason: Reason
) -> None:
    graph.error = (status, None)
    assert (await failure(client(session, graph))).reason is reason


async def test_an_error_code_written_as_a_string_still_gives_the_reason(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    graph.error = (400, {"error": {"code": "80008", "message": "too many calls"}})
    assert (await failure(client(session, graph))).reason is Reason.RATE_LIMITED


async def test_an_error_object_answered_with_200_is_an_error(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    graph.error = (200, {"error": {"code": 80008, "message": "too many calls"}})
    assert (await failure(client(session, graph))).reason is Reason.RATE_LIMITED


async def test_the_usage_header_is_read_on_every_answer_failed_ones_too(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    c = client(session, graph)
    graph.usage = {"type": "WHATSAPP", "call_count": 28, "total_cputime": 5, "total_time": 91}
    await c.attempt()
    assert c.usage is not None
    assert dict(c.usage.ratios) == {"call_count": 0.28, "total_cputime": 0.05, "total_time": 0.91}
    graph.usage = {
        "call_count": 100,
        "total_cputime": 3,
        "total_time": 4,
        "estimated_time_to_regain_access": 7,
    }
    graph.error = (400, {"error": {"code": 80007}})
    err = await failure(c)
    assert err.reason is Reason.RATE_LIMITED
    assert err.retry_after == 7 * 60
    assert dict(c.usage.ratios)["call_count"] == 1.0


async def test_a_body_over_the_cap_fails_the_poll(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    graph.numbers = [number(i) for i in range(100)]
    err = await failure(client(session, graph, max_response_bytes=4096))
    assert err.reason is Reason.INVALID_RESPONSE


async def test_more_numbers_than_the_series_limit_fail_the_poll(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    graph.numbers = [number(i) for i in range(150)]
    err = await failure(client(session, graph, max_series=2000))
    assert err.reason is Reason.INVALID_RESPONSE
    assert "--poll.max-series" in err.detail
    assert len((await client(session, graph, max_series=10000).attempt()).numbers) == 150


async def test_a_hanging_page_times_out_the_whole_attempt(
    session: aiohttp.ClientSession, raw_server: Any
) -> None:
    import asyncio

    from aiohttp import web

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    base = await raw_server(hang)
    account = CloudAccount("acme", WABA_ID, graph_url=base, token=SecretStr(TOKEN))
    c = CloudClient(session, account, timeout=0.2, max_response_bytes=1024)
    assert (await failure(c)).reason is Reason.TIMEOUT


async def test_a_rotated_token_file_is_used_at_the_next_attempt(
    session: aiohttp.ClientSession, graph: FakeGraph, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    c = client(session, graph, token=None, token_file=token_file)
    await c.attempt()
    graph.token = "EAAG-rotated-token-9876543210"
    err = await failure(c)
    assert err.reason is Reason.AUTH
    token_file.write_text(graph.token)
    await c.attempt()
    assert graph.requests[-1].headers["Authorization"] == f"Bearer {graph.token}"


async def test_an_unreadable_token_file_fails_with_auth_and_names_only_the_file(
    session: aiohttp.ClientSession, graph: FakeGraph, tmp_path: Path
) -> None:
    err = await failure(client(session, graph, token=None, token_file=tmp_path / "missing"))
    assert err.reason is Reason.AUTH
    assert "missing" in err.detail
    assert graph.requests == []


async def test_a_rejected_token_never_appears_in_the_error(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    wrong = "EAAG-wrong-token-shown-nowhere"
    err = await failure(client(session, graph, token=SecretStr(wrong)))
    assert err.reason is Reason.AUTH
    assert wrong not in str(err) and wrong not in repr(err)


# -- the model, through the client -----------------------------------------------------------


async def answer_with(
    session: aiohttp.ClientSession, graph: FakeGraph, **fields: Any
) -> CloudAnswer:
    graph.numbers = [number(1, **fields)]
    return await client(session, graph).attempt()


async def test_every_field_of_a_number_is_read(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    answer = await answer_with(session, graph)
    n = answer.numbers[0]
    assert (n.quality_rating, n.status, n.platform, n.throughput) == (
        "GREEN",
        "CONNECTED",
        "CLOUD_API",
        "STANDARD",
    )
    assert (n.name_status, n.can_send_message, n.code_verification_status) == (
        "APPROVED",
        "AVAILABLE",
        "VERIFIED",
    )
    assert (n.display_phone_number, n.verified_name, n.account_mode) == (
        "+1 555-0101",
        "Shop 1",
        "LIVE",
    )
    assert n.messaging_limit == 1000
    assert n.last_onboarded == 1692731134.0
    assert answer.invalid_fields == ()
    waba = answer.waba
    assert (waba.name, waba.can_send_message, waba.account_review_status) == (
        "Acme",
        "LIMITED",
        "APPROVED",
    )
    blocked = next(e for e in waba.entities if e.entity_type == "PHONE_NUMBER")
    assert (blocked.can_send_message, blocked.error_codes) == ("BLOCKED", ("141002",))


async def test_unknown_enum_values_are_kept(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    n = (
        await answer_with(
            session,
            graph,
            quality_rating="PURPLE",
            status="SUSPENDED_FOR_REVIEW",
            platform_type="SATELLITE",
            throughput={"level": "ULTRA"},
        )
    ).numbers[0]
    assert (n.quality_rating, n.status, n.platform, n.throughput) == (
        "PURPLE",
        "SUSPENDED_FOR_REVIEW",
        "SATELLITE",
        "ULTRA",
    )


async def test_the_platform_is_read_under_either_name(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    answer = await answer_with(session, graph, platform_type=None, host_platform="ON_PREMISE")
    assert answer.numbers[0].platform == "ON_PREMISE"
    assert answer.invalid_fields == ()


@pytest.mark.parametrize(
    ("fields", "limit"),
    [
        ({"whatsapp_business_manager_messaging_limit": "TIER_10K"}, 10000),
        (
            {"whatsapp_business_manager_messaging_limit": None, "messaging_limit_tier": "TIER_250"},
            250,
        ),
        (
            {
                "whatsapp_business_manager_messaging_limit": "TIER_100K",
                "messaging_limit_tier": "TIER_50",
            },
            100000,
        ),
        ({"whatsapp_business_manager_messaging_limit": "TIER_UNLIMITED"}, math.inf),
        ({"whatsapp_business_manager_messaging_limit": "UNTIERED"}, None),
        ({"whatsapp_business_manager_messaging_limit": "TIER_7K"}, None),
    ],
)
async def test_the_messaging_limit_prefers_the_business_manager_field(
    session: aiohttp.ClientSession, graph: FakeGraph, fields: dict[str, Any], limit: float | None
) -> None:
    answer = await answer_with(session, graph, **fields)
    assert answer.numbers[0].messaging_limit == limit


async def test_a_missing_or_mistyped_field_is_dropped_and_named(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    answer = await answer_with(session, graph, quality_rating=None, status=7, throughput="HIGH")
    n = answer.numbers[0]
    assert (n.quality_rating, n.status, n.throughput) == (None, None, None)
    assert n.name_status == "APPROVED"
    assert sorted(answer.invalid_fields) == ["quality_rating", "status", "throughput"]


async def test_a_body_that_is_no_graph_object_fails_the_poll(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    graph.account = ["not", "an", "object"]  # type: ignore[assignment]
    assert (await failure(client(session, graph))).reason is Reason.INVALID_RESPONSE


def test_a_next_page_with_the_default_port_written_out_is_the_same_host() -> None:
    account = CloudAccount("acme", WABA_ID, token=SecretStr(TOKEN))
    c = CloudClient(None, account, timeout=1, max_response_bytes=1024)  # type: ignore[arg-type]
    same = "https://GRAPH.facebook.com:443/v24.0/1/phone_numbers?after=x"
    assert c._same_host(same) == same
    for other in (
        "http://graph.facebook.com/v24.0/1",
        "https://graph.facebook.com.evil/x",
        "//elsewhere.example/v24.0/1",
        "next-page",
    ):
        with pytest.raises(PollError):
            c._same_host(other)
    assert c._same_host("/v24.0/1/phone_numbers?after=x") == (
        "https://graph.facebook.com/v24.0/1/phone_numbers?after=x"
    )


@pytest.mark.parametrize(
    "header", ["", "not json", "[1, 2]", '{"1": [{"call_count": "lots"}]}', '{"1": 5}']
)
def test_an_unreadable_usage_header_is_ignored(header: str) -> None:
    from whatsapp_support_exporter.upstream.cloud.model import parse_usage

    assert parse_usage(header) is None


def test_the_highest_usage_of_every_business_and_type_is_kept_within_0_and_1() -> None:
    from whatsapp_support_exporter.upstream.cloud.model import parse_usage

    usage = parse_usage(
        '{"1": [{"type": "a", "call_count": 20, "total_time": 5},'
        ' {"type": "b", "call_count": 130, "estimated_time_to_regain_access": 2}],'
        ' "2": {"call_count": 40, "total_cputime": 7, "total_time": 9}}'
    )
    assert usage is not None
    assert dict(usage.ratios) == {"call_count": 1.0, "total_cputime": 0.07, "total_time": 0.09}
    assert usage.regain_seconds == 120


@pytest.mark.parametrize(
    ("version", "refused", "kept"),
    [
        ("v24.0", "messaging_limit_tier", "whatsapp_business_manager_messaging_limit"),
        ("v23.0", "whatsapp_business_manager_messaging_limit", "messaging_limit_tier"),
    ],
)
async def test_a_version_refusing_one_messaging_limit_field_is_asked_without_it(
    session: aiohttp.ClientSession, graph: FakeGraph, version: str, refused: str, kept: str
) -> None:
    graph.refused_fields = {refused}
    graph.numbers = [number(1, messaging_limit_tier="TIER_250")]
    c = client(session, graph, api_version=version)
    first = await c.attempt()
    second = await c.attempt()
    expected = 1000 if kept.startswith("whatsapp") else 250
    assert first.numbers[0].messaging_limit == second.numbers[0].messaging_limit == expected
    asked = [r.query["fields"].split(",") for r in graph.requests if "phone_numbers" in r.path]
    assert len(asked) == 3  # refused once, then asked without it (and remembered)
    assert refused in asked[0] and refused not in asked[1] and refused not in asked[2]
    assert kept in asked[2]


async def test_another_invalid_parameter_still_fails_the_poll(
    session: aiohttp.ClientSession, graph: FakeGraph
) -> None:
    graph.refused_fields = {"quality_rating"}
    err = await failure(client(session, graph))
    assert (err.reason, "Graph error 100" in err.detail) == (Reason.HTTP, True)
