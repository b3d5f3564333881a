"""The simulated Graph API must answer as the real one does, or every Cloud API test built on it lies.

Each test is what a client of the fake sees on the wire: fields, paging, tokens, the usage
header, error bodies, injected faults, and numbers that change as a fake clock moves.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy
from yarl import URL

from tests.conftest import FakeClock
from whatsapp_api_simulator.cli import build_parser
from whatsapp_api_simulator.cloud import (
    CODE_VERIFICATION_STATUSES,
    MESSAGING_TIERS,
    MISSING,
    NAME_STATUSES,
    PLATFORMS,
    QUALITY_RATINGS,
    STATUSES,
    THROUGHPUT_LEVELS,
    USAGE_HEADER,
    Account,
    GraphSimulator,
    graph_from_args,
    start_graph,
)

START = 1_779_998_600.0  # 200 s into an hour window
TOKEN = "EAAG-simulated-system-user-token"
NUMBER_FIELDS = (
    "id,display_phone_number,verified_name,quality_rating,status,platform_type,throughput,"
    "messaging_limit_tier,whatsapp_business_manager_messaging_limit,name_status,"
    "code_verification_status,account_mode,last_onboarded_time,health_status"
)
USAGE_KINDS = ("call_count", "total_cputime", "total_time")
ACCOUNT_QUERY = "fields=name,health_status,account_review_status,business_verification_status"

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
Answer = tuple[int, Any, CIMultiDictProxy[str]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def graph(clock: FakeClock) -> GraphSimulator:
    return GraphSimulator(token=TOKEN, clock=clock, seed=3)


@pytest.fixture
def demo(graph: GraphSimulator) -> Account:
    return graph.add_demo_account(period=600.0)


@pytest.fixture
async def client(aiohttp_client: MakeClient, graph: GraphSimulator, demo: Account) -> Client:
    return await aiohttp_client(graph.app())


async def get(
    client: Client, path: str, token: str | None = TOKEN, give_up: float | None = None
) -> Answer:
    """Status, JSON body (raw bytes when not JSON) and headers of one request."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    limit = aiohttp.ClientTimeout(total=give_up)
    async with client.get(path, headers=headers, timeout=limit) as resp:
        body = await resp.read()
    try:
        return resp.status, orjson.loads(body), resp.headers
    except orjson.JSONDecodeError:
        return resp.status, body, resp.headers


async def all_numbers(client: Client, waba_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Follow `paging.next` to the end, as the exporter does."""
    status, page, _ = await get(
        client, f"/v24.0/{waba_id}/phone_numbers?fields={NUMBER_FIELDS}&limit={limit}"
    )
    assert status == 200
    numbers = list(page["data"])
    while "next" in page.get("paging", {}):
        status, page, _ = await get(client, URL(page["paging"]["next"]).path_qs)
        assert status == 200
        numbers += page["data"]
    return numbers


def usage(headers: CIMultiDictProxy[str]) -> dict[str, Any]:
    """The one entry of the one business of the usage header."""
    ((entry,),) = orjson.loads(headers[USAGE_HEADER]).values()
    return dict(entry)


# --------------------------------------------------------------------- the account


async def test_account_answers_its_fields_and_the_health_of_every_entity(
    client: Client, demo: Account
) -> None:
    status, body, _ = await get(client, f"/v24.0/{demo.waba_id}?{ACCOUNT_QUERY}")
    assert status == 200
    fields = ("id", "name", "account_review_status", "business_verification_status")
    assert [body[f] for f in fields] == [demo.waba_id, "Acme Support", "APPROVED", "verified"]
    health = body["health_status"]
    kinds = [e["entity_type"] for e in health["entities"]]
    assert kinds.count("PHONE_NUMBER") == len(demo.numbers)
    assert kinds[-3:] == ["WABA", "BUSINESS", "APP"]
    blocked = [e for e in health["entities"] if e["can_send_message"] == "BLOCKED"]
    error_keys = {"error_code", "error_description", "possible_solution"}
    assert blocked and set(blocked[0]["errors"][0]) == error_keys
    limited = [e for e in health["entities"] if e["can_send_message"] == "LIMITED"]
    assert limited and limited[0]["additional_info"]
    # Meta's rule: one blocked entity makes the whole account blocked.
    assert health["can_send_message"] == "BLOCKED"


async def test_overall_can_send_is_the_worst_entity(client: Client, demo: Account) -> None:
    for number in demo.numbers:
        number.health.can_send_message = "AVAILABLE"
    demo.app_health.can_send_message = "LIMITED"
    _, body, _ = await get(client, f"/v24.0/{demo.waba_id}?fields=health_status")
    assert body["health_status"]["can_send_message"] == "LIMITED"
    demo.app_health.can_send_message = "AVAILABLE"
    _, body, _ = await get(client, f"/v24.0/{demo.waba_id}?fields=health_status")
    assert body["health_status"]["can_send_message"] == "AVAILABLE"


async def test_extra_entities_join_the_account_health(client: Client, demo: Account) -> None:
    for number in demo.numbers:
        number.health.can_send_message = "AVAILABLE"
    template = {"entity_type": "MESSAGE_TEMPLATE", "id": "1234", "can_send_message": "LIMITED"}
    demo.extra_entities.append(template)
    _, body, _ = await get(client, f"/v24.0/{demo.waba_id}?fields=health_status")
    assert body["health_status"]["entities"][-1] == template
    assert body["health_status"]["can_send_message"] == "LIMITED"


@pytest.mark.parametrize("version", ["v19.0", "v24.0", "v26.0"])
async def test_any_graph_version_prefix_is_served(
    client: Client, demo: Account, version: str
) -> None:
    status, body, headers = await get(client, f"/{version}/{demo.waba_id}?fields=name")
    assert (status, body) == (200, {"name": "Acme Support", "id": demo.waba_id})
    assert headers["facebook-api-version"] == version


async def test_an_unknown_id_or_path_answers_graph_error_100(client: Client) -> None:
    status, body, _ = await get(client, "/v24.0/999999999?fields=name")
    error = body["error"]
    assert (status, error["code"], error["type"]) == (400, 100, "GraphMethodException")
    status, body, _ = await get(client, "/v24.0/me/nothing/here")
    assert (status, body["error"]["code"]) == (400, 100)


# --------------------------------------------------------------------- numbers and paging


async def test_paging_gives_every_number_once_and_the_last_page_has_no_next(
    client: Client, demo: Account
) -> None:
    demo.page_size_cap = 4
    status, first, _ = await get(client, f"/v24.0/{demo.waba_id}/phone_numbers?fields=id&limit=100")
    assert (status, len(first["data"])) == (200, 4)
    assert set(first["paging"]["cursors"]) == {"before", "after"}
    next_url = URL(first["paging"]["next"])
    assert next_url.is_absolute() and next_url.host == "127.0.0.1"
    assert next_url.query["fields"] == "id" and next_url.query["limit"] == "100"
    numbers = await all_numbers(client, demo.waba_id)
    assert [n["id"] for n in numbers] == [n.id for n in demo.numbers]
    demo.page_size_cap = None
    status, whole, _ = await get(client, f"/v24.0/{demo.waba_id}/phone_numbers?limit=100")
    assert len(whole["data"]) == len(demo.numbers)
    assert "next" not in whole["paging"]


async def test_limit_sets_the_page_size_and_later_pages_link_back(
    client: Client, demo: Account
) -> None:
    _, first, _ = await get(client, f"/v24.0/{demo.waba_id}/phone_numbers?fields=id&limit=5")
    assert len(first["data"]) == 5 and "previous" not in first["paging"]
    _, second, _ = await get(client, URL(first["paging"]["next"]).path_qs)
    assert [n["id"] for n in second["data"]] == [n.id for n in demo.numbers[5:10]]
    _, back, _ = await get(client, URL(second["paging"]["previous"]).path_qs)
    assert back["data"] == first["data"]


async def test_numbers_answer_only_the_fields_asked_for_and_always_their_id(
    client: Client, demo: Account
) -> None:
    _, page, _ = await get(
        client, f"/v24.0/{demo.waba_id}/phone_numbers?fields=quality_rating,no_such_field"
    )
    assert set(page["data"][0]) == {"id", "quality_rating"}
    # Graph's sub-selection syntax is accepted.
    _, page, _ = await get(
        client, f"/v24.0/{demo.waba_id}/phone_numbers?fields=health_status{{can_send_message}},id"
    )
    assert set(page["data"][0]) == {"id", "health_status"}


async def test_strict_fields_refuse_an_unknown_field_with_error_100(
    client: Client, graph: GraphSimulator, demo: Account
) -> None:
    graph.strict_fields = True
    status, body, _ = await get(client, f"/v24.0/{demo.waba_id}/phone_numbers?fields=bogus")
    assert (status, body["error"]["code"]) == (400, 100)
    assert "bogus" in body["error"]["message"]


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("quality_rating", QUALITY_RATINGS),
        ("status", STATUSES),
        ("platform_type", PLATFORMS),
        ("messaging_limit_tier", MESSAGING_TIERS),
        ("whatsapp_business_manager_messaging_limit", MESSAGING_TIERS),
        ("name_status", NAME_STATUSES),
        ("code_verification_status", CODE_VERIFICATION_STATUSES),
        ("account_mode", ("LIVE", "SANDBOX")),
    ],
)
async def test_the_demo_account_shows_every_documented_value(
    client: Client, demo: Account, field: str, values: tuple[str, ...]
) -> None:
    seen = {n.get(field) for n in await all_numbers(client, demo.waba_id, limit=4)}
    assert set(values) <= seen


async def test_the_demo_account_shows_every_throughput_and_can_send_value(
    client: Client, demo: Account
) -> None:
    numbers = await all_numbers(client, demo.waba_id)
    assert {n["throughput"]["level"] for n in numbers} == set(THROUGHPUT_LEVELS)
    can_send = {n["health_status"]["can_send_message"] for n in numbers}
    assert can_send >= {"AVAILABLE", "LIMITED", "BLOCKED"}
    for number in numbers:
        kinds = [e["entity_type"] for e in number["health_status"]["entities"]]
        assert kinds == ["PHONE_NUMBER", "WABA", "BUSINESS", "APP"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", number["last_onboarded_time"])


async def test_messaging_limit_fields_come_alone_together_or_disagreeing(
    client: Client, demo: Account
) -> None:
    numbers = await all_numbers(client, demo.waba_id)
    old, new = "messaging_limit_tier", "whatsapp_business_manager_messaging_limit"
    assert any(old in n and new not in n for n in numbers)
    assert any(new in n and old not in n for n in numbers)
    assert any(old in n and new in n and n[old] != n[new] for n in numbers)


async def test_a_number_answers_the_same_object_on_its_own_id(
    client: Client, demo: Account
) -> None:
    (listed,) = [n for n in await all_numbers(client, demo.waba_id) if n["status"] == "FLAGGED"]
    status, alone, _ = await get(client, f"/v24.0/{listed['id']}?fields={NUMBER_FIELDS}")
    assert (status, alone) == (200, listed)


async def test_the_other_platform_field_name_replaces_platform_type(
    client: Client, demo: Account
) -> None:
    demo.platform_field = "host_platform"
    numbers = await all_numbers(client, demo.waba_id)
    assert all("platform_type" not in n for n in numbers)
    assert {n["host_platform"] for n in numbers} == set(PLATFORMS)


async def test_unknown_enum_values_are_served_verbatim(
    aiohttp_client: MakeClient, graph: GraphSimulator
) -> None:
    odd = graph.add_account("Odd Ltd", unknown_values=True)
    client = await aiohttp_client(graph.app())
    (number,) = await all_numbers(client, odd.waba_id)
    assert number["quality_rating"] not in QUALITY_RATINGS
    assert number["status"] not in STATUSES
    assert number["platform_type"] not in PLATFORMS
    assert number["messaging_limit_tier"] not in MESSAGING_TIERS
    assert number["health_status"]["entities"][0]["can_send_message"] == "SOMETIMES"


async def test_overrides_drop_a_field_or_give_it_the_wrong_type(
    client: Client, demo: Account
) -> None:
    demo.numbers[0].overrides.update(quality_rating=MISSING, throughput="HIGH")
    demo.numbers[1].overrides["last_onboarded_time"] = 1692731134
    demo.overrides["health_status"] = MISSING
    numbers = await all_numbers(client, demo.waba_id)
    assert "quality_rating" not in numbers[0] and numbers[0]["throughput"] == "HIGH"
    assert numbers[1]["last_onboarded_time"] == 1692731134
    _, body, _ = await get(client, f"/v24.0/{demo.waba_id}?{ACCOUNT_QUERY}")
    assert "health_status" not in body and body["name"] == "Acme Support"


# --------------------------------------------------------------------- tokens


@pytest.mark.parametrize("token", [None, "", "EAAG-wrong"])
async def test_a_missing_or_wrong_token_gets_error_190_with_401(
    client: Client, demo: Account, token: str | None
) -> None:
    status, body, _ = await get(client, f"/v24.0/{demo.waba_id}?fields=name", token)
    assert status == 401
    assert set(body["error"]) >= {"message", "type", "code", "fbtrace_id"}
    assert (body["error"]["code"], body["error"]["type"]) == (190, "OAuthException")
    assert TOKEN not in str(body)


async def test_a_rotated_token_works_at_once_and_the_old_one_stops(
    client: Client, graph: GraphSimulator, demo: Account
) -> None:
    path = f"/v24.0/{demo.waba_id}?fields=name"
    new = graph.rotate_token()
    assert new != TOKEN and graph.token == new
    assert (await get(client, path, new))[0] == 200
    assert (await get(client, path, TOKEN))[0] == 401
    newer = graph.rotate_token(keep_old=True)
    assert (await get(client, path, new))[0] == 200
    assert (await get(client, path, newer))[0] == 200


async def test_an_account_can_take_its_own_token(
    client: Client, graph: GraphSimulator, demo: Account
) -> None:
    demo.tokens = {"EAAG-account-own"}
    path = f"/v24.0/{demo.waba_id}/phone_numbers?fields=id"
    assert (await get(client, path, "EAAG-account-own"))[0] == 200
    assert (await get(client, path, TOKEN))[0] == 401


# --------------------------------------------------------------------- usage and rate limit


async def test_usage_header_on_every_answer_grows_with_calls_and_resets_each_hour(
    client: Client, clock: FakeClock, demo: Account
) -> None:
    path = f"/v24.0/{demo.waba_id}?fields=name"
    counts = []
    for _ in range(4):
        _, _, headers = await get(client, path)
        entry = usage(headers)
        assert set(entry) == {"type", *USAGE_KINDS, "estimated_time_to_regain_access"}
        counts.append(entry["call_count"])
    assert counts == [1, 1, 2, 2]  # percent of 200 calls an hour, rounded up
    (business,) = orjson.loads(headers[USAGE_HEADER])
    assert business == demo.business_id
    demo.use(150)
    _, _, headers = await get(client, f"/v24.0/{demo.waba_id}/phone_numbers?limit=1")
    assert usage(headers)["call_count"] == 76
    clock.now += 3600  # the next hour window
    _, _, headers = await get(client, path)
    assert usage(headers)["call_count"] == 1


async def test_over_the_hourly_limit_calls_get_80007_until_the_hour_ends(
    client: Client, clock: FakeClock, demo: Account
) -> None:
    path = f"/v24.0/{demo.waba_id}?fields=name"
    demo.use(199)
    assert (await get(client, path))[0] == 200
    status, body, headers = await get(client, path)
    assert (status, body["error"]["code"]) == (400, 80007)
    entry = usage(headers)  # 3400 s left in the hour: 57 minutes
    assert (entry["call_count"], entry["estimated_time_to_regain_access"]) == (100, 57)
    assert demo.requests["rejected"] == 1
    clock.now += 3400
    assert (await get(client, path))[0] == 200


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80008])
async def test_the_rate_limit_code_can_be_any_of_graphs(
    client: Client, demo: Account, code: int
) -> None:
    demo.rate_limit, demo.rate_limit_code = 1, code
    await get(client, f"/v24.0/{demo.waba_id}?fields=name")
    status, body, _ = await get(client, f"/v24.0/{demo.waba_id}?fields=name")
    assert (status, body["error"]["code"]) == (400, code)


# --------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("code", "status"),
    [(190, 401), (102, 401), (10, 403), (200, 403), (299, 403), (4, 400), (80007, 400),
     (1, 500), (2, 503), (100, 400), (131000, 400)],
)  # fmt: skip
async def test_an_injected_graph_error_answers_for_the_next_n_requests(
    client: Client, graph: GraphSimulator, demo: Account, code: int, status: int
) -> None:
    graph.inject(demo.waba_id, error=code, count=2)
    path = f"/v24.0/{demo.waba_id}?fields=name"
    for _ in range(2):
        got, body, headers = await get(client, path)
        assert (got, body["error"]["code"]) == (status, code)
        assert USAGE_HEADER in headers
    assert (await get(client, path))[0] == 200


async def test_a_rate_limit_fault_sets_the_time_to_regain_access(
    client: Client, graph: GraphSimulator, demo: Account
) -> None:
    graph.inject(demo.waba_id, error=80007, regain_minutes=12)
    _, _, headers = await get(client, f"/v24.0/{demo.waba_id}?fields=name")
    assert usage(headers)["estimated_time_to_regain_access"] == 12


async def test_an_injected_status_without_graph_body(
    client: Client, graph: GraphSimulator, demo: Account
) -> None:
    graph.inject(demo.waba_id, status=502)
    status, body, _ = await get(client, f"/v24.0/{demo.waba_id}?fields=name")
    assert status == 502 and not isinstance(body, dict)


async def test_a_fault_can_hit_one_endpoint_of_every_account(
    aiohttp_client: MakeClient, graph: GraphSimulator, demo: Account
) -> None:
    other = graph.add_account(numbers=2)
    client = await aiohttp_client(graph.app())
    graph.inject(None, error=2, endpoint="phone_numbers", count=None)
    for account in (demo, other):
        assert (await get(client, f"/v24.0/{account.waba_id}?fields=name"))[0] == 200
        assert (await get(client, f"/v24.0/{account.waba_id}/phone_numbers"))[0] == 503
    graph.clear_faults()
    assert (await get(client, f"/v24.0/{other.waba_id}/phone_numbers"))[0] == 200


async def test_a_hang_never_answers_until_the_client_gives_up(
    client: Client, graph: GraphSimulator, demo: Account
) -> None:
    graph.inject(demo.waba_id, hang=True)
    with pytest.raises(asyncio.TimeoutError):
        await get(client, f"/v24.0/{demo.waba_id}?fields=name", give_up=0.2)
    assert (await get(client, f"/v24.0/{demo.waba_id}?fields=name"))[0] == 200


async def test_latency_alone_delays_the_real_answer(
    client: Client, graph: GraphSimulator, demo: Account
) -> None:
    graph.inject(demo.waba_id, latency=0.3)
    path = f"/v24.0/{demo.waba_id}?fields=name"
    with pytest.raises(asyncio.TimeoutError):
        await get(client, path, give_up=0.05)
    graph.inject(demo.waba_id, latency=0.01)
    status, body, _ = await get(client, path)
    assert (status, body["name"]) == (200, "Acme Support")


async def test_an_oversize_body_is_as_large_as_asked(
    client: Client, graph: GraphSimulator, demo: Account
) -> None:
    graph.inject(demo.waba_id, body_size=3_000_000, endpoint="phone_numbers")
    status, body, headers = await get(client, f"/v24.0/{demo.waba_id}/phone_numbers")
    assert (status, headers["Content-Length"], len(body)) == (200, "3000000", 3_000_000)


async def test_endless_pages_always_offer_a_next_page(client: Client, demo: Account) -> None:
    demo.endless_pages = True
    status, page, _ = await get(client, f"/v24.0/{demo.waba_id}/phone_numbers?limit=100")
    for _ in range(30):
        assert status == 200 and page["data"]
        status, page, _ = await get(client, URL(page["paging"]["next"]).path_qs)
    assert "next" in page["paging"]


async def test_next_can_point_at_another_host(client: Client, demo: Account) -> None:
    demo.next_host, demo.page_size_cap = "graph.elsewhere.invalid", 2
    _, page, _ = await get(client, f"/v24.0/{demo.waba_id}/phone_numbers?limit=100")
    assert URL(page["paging"]["next"]).host == "graph.elsewhere.invalid"


# --------------------------------------------------------------------- change over time


async def test_a_number_moves_from_on_premise_to_cloud_api_with_the_clock(
    client: Client, clock: FakeClock, demo: Account
) -> None:
    migrating, seen = demo.numbers[-3], []
    migrating.on_change = lambda number: seen.append(number.platform_type)

    async def platform() -> tuple[str, str]:
        _, body, _ = await get(
            client, f"/v24.0/{migrating.id}?fields=platform_type,last_onboarded_time"
        )
        return body["platform_type"], body["last_onboarded_time"]

    before = await platform()
    assert before[0] == "ON_PREMISE"
    clock.now += 299
    assert (await platform())[0] == "ON_PREMISE"
    clock.now += 1
    after = await platform()
    assert after[0] == "CLOUD_API" and after[1] > before[1]
    clock.now += 6000  # migrated for good
    assert (await platform())[0] == "CLOUD_API"
    assert seen == ["CLOUD_API"]  # the hook heard the step, once


async def test_a_quality_rating_drops_to_red_and_recovers(
    client: Client, clock: FakeClock, demo: Account
) -> None:
    swinging = demo.numbers[-2]
    seen = []
    for _ in range(5):
        _, body, _ = await get(client, f"/v24.0/{swinging.id}?fields=quality_rating")
        seen.append(body["quality_rating"])
        clock.now += 150
    assert seen == ["GREEN", "YELLOW", "RED", "YELLOW", "GREEN"]


async def test_a_number_is_flagged_then_restored_to_connected(
    client: Client, clock: FakeClock, demo: Account
) -> None:
    flagged = demo.numbers[-1]
    seen = []
    for _ in range(4):
        numbers = await all_numbers(client, demo.waba_id)
        seen.append(next(n["status"] for n in numbers if n["id"] == flagged.id))
        clock.now += 200
    assert seen == ["CONNECTED", "FLAGGED", "CONNECTED", "CONNECTED"]


async def test_a_scripted_field_set_by_hand_sticks(client: Client, demo: Account) -> None:
    demo.numbers[-2].quality_rating = "NA"
    _, body, _ = await get(client, f"/v24.0/{demo.numbers[-2].id}?fields=quality_rating")
    assert body["quality_rating"] == "NA"


# --------------------------------------------------------------------- many accounts, serving


def test_many_accounts_have_distinct_ids_and_labels(graph: GraphSimulator) -> None:
    accounts = graph.add_accounts(1000, numbers=10)
    assert len(graph.waba_ids) == len(set(graph.waba_ids)) == 1000
    ids = {n.id for a in accounts for n in a.numbers}
    assert len(ids) == 10_000
    assert [a.label for a in accounts[:2]] == ["acct-0", "acct-1"]
    assert graph.add_accounts(1)[0].label == "acct-1000"
    assert graph.account("acct-7") is accounts[7]


async def test_start_graph_serves_on_a_port_until_closed() -> None:
    async with start_graph(accounts=2, numbers=3, token=TOKEN) as server:
        assert len(server.waba_ids) == 3  # the demo account and two plain ones
        waba = server.waba_ids[1]
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as http,
            http.get(f"{server.url}/v24.0/{waba}/phone_numbers?fields=id") as resp,
        ):
            assert (resp.status, len((await resp.json())["data"])) == (200, 3)
        url = server.url
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(url):
            pass


def test_no_graph_option_serves_no_graph_api() -> None:
    assert graph_from_args(build_parser().parse_args([])) is None


def test_the_command_line_prints_the_exporters_cloud_settings() -> None:
    command = [sys.executable, "-m", "whatsapp_api_simulator", "--listen", "127.0.0.1:0"]
    command += ["--graph-demo", "--graph-accounts", "2", "--graph-token", TOKEN]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("single-0=http://127.0.0.1:")
        settings = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert settings["WA_CLOUD_TOKEN"] == TOKEN
        accounts = dict(p.split("=") for p in settings["WA_CLOUD_WABA_IDS"].split(","))
        assert list(accounts) == ["demo", "acct-0", "acct-1"]
        request = urllib.request.Request(
            f"{settings['WA_CLOUD_GRAPH_URL']}/v24.0/{accounts['acct-1']}?fields=name",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert orjson.loads(resp.read())["name"] == "Business 1"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
