"""The Cloud API side against an independent Graph fake (tests/metagraph.py): pages, the fields
asked for, absent and unknown values, both names of the platform, both messaging-limit fields.
What is asserted is what a user reads on ``/metrics``."""

from __future__ import annotations

import math

import pytest
from aiohttp import web

from tests.cloud_hostile_kit import Exporter, errors, series, value
from tests.metagraph import WABA, MetaGraph, graph_error, phone, serve_meta_graph

CONTRACT_ACCOUNT_FIELDS = "name,health_status,account_review_status,business_verification_status"
CONTRACT_NUMBER_FIELDS = {
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "status",
    "platform_type",
    "throughput",
    "name_status",
    "code_verification_status",
    "account_mode",
    "last_onboarded_time",
    "health_status",
}


async def test_numbers_over_several_pages_are_all_exported_asking_what_the_contract_asks(
    exporter: Exporter, meta: MetaGraph
) -> None:
    meta.numbers = [phone(i) for i in range(230)]
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up", account="harbour") == 1
    quality = series(text, "whatsapp_cloud_phone_number_quality")
    assert len({k for k in quality if 'quality="GREEN"' in k}) == 230
    account, *pages = meta.requests
    assert account.path == f"/v24.0/{WABA}"
    assert account.query == {"fields": CONTRACT_ACCOUNT_FIELDS}
    assert len(pages) == 3
    for page in pages:
        assert page.path == f"/v24.0/{WABA}/phone_numbers"
        assert page.query["limit"] == "100"
        asked = set(page.query["fields"].split(","))
        assert asked >= CONTRACT_NUMBER_FIELDS
        assert asked & {"whatsapp_business_manager_messaging_limit", "messaging_limit_tier"}
    assert "after" not in pages[0].query
    assert pages[1].query["after"] != pages[2].query["after"]
    assert {r.authorization for r in meta.requests} == {"Bearer " + meta.tokens.copy().pop()}


async def test_every_documented_state_is_a_state_set_with_one_current_value(
    exporter: Exporter, meta: MetaGraph
) -> None:
    statuses = [
        "PENDING",
        "DELETED",
        "MIGRATED",
        "BANNED",
        "RESTRICTED",
        "RATE_LIMITED",
        "FLAGGED",
        "CONNECTED",
        "DISCONNECTED",
        "UNKNOWN",
        "UNVERIFIED",
    ]
    qualities = ["GREEN", "YELLOW", "RED", "NA", "UNKNOWN"]
    meta.numbers = [
        phone(
            i,
            status=s,
            quality_rating=qualities[i % 5],
            platform_type="ON_PREMISE" if i == 3 else "CLOUD_API",
        )
        for i, s in enumerate(statuses)
    ]
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    status = series(text, "whatsapp_cloud_phone_number_status")
    for i, s in enumerate(statuses):
        mine = {k: v for k, v in status.items() if phone(i)["id"] in k}
        assert len(mine) == len(statuses)
        assert [k for k, v in mine.items() if v == 1] == [
            f'{{account="harbour",phone_number_id="{phone(i)["id"]}",status="{s}"}}'
        ]
        assert (
            value(
                text,
                "whatsapp_cloud_phone_number_quality",
                phone_number_id=phone(i)["id"],
                quality=qualities[i % 5],
            )
            == 1
        )
    on_prem = value(
        text,
        "whatsapp_cloud_phone_number_platform",
        phone_number_id=phone(3)["id"],
        platform="ON_PREMISE",
    )
    assert on_prem == 1
    assert value(text, "whatsapp_cloud_can_send_message", status="BLOCKED") == 1
    assert value(text, "whatsapp_cloud_entity_error_info", error_code="141006") == 1


async def test_unknown_enum_values_are_series_of_their_own_and_the_poll_works(
    exporter: Exporter, meta: MetaGraph
) -> None:
    meta.numbers = [
        phone(
            1,
            status="PAUSED_FOR_REVIEW",
            quality_rating="ORANGE",
            platform_type="HYBRID",
            throughput={"level": "TURBO"},
            name_status="IN_APPEAL",
            health_status={"can_send_message": "THROTTLED"},
        )
    ]
    meta.account["health_status"] = {"can_send_message": "DEGRADED", "entities": []}
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1
    pid = phone(1)["id"]
    assert (
        value(
            text,
            "whatsapp_cloud_phone_number_status",
            phone_number_id=pid,
            status="PAUSED_FOR_REVIEW",
        )
        == 1
    )
    assert value(text, "whatsapp_cloud_phone_number_status", status="CONNECTED") == 0
    assert value(text, "whatsapp_cloud_phone_number_quality", quality="ORANGE") == 1
    assert value(text, "whatsapp_cloud_phone_number_platform", platform="HYBRID") == 1
    assert value(text, "whatsapp_cloud_phone_number_throughput", level="TURBO") == 1
    assert value(text, "whatsapp_cloud_phone_number_name_status", status="IN_APPEAL") == 1
    assert value(text, "whatsapp_cloud_phone_number_can_send_message", status="THROTTLED") == 1
    assert value(text, "whatsapp_cloud_can_send_message", status="DEGRADED") == 1
    assert errors(text) == {}


async def test_host_platform_is_read_when_the_edge_names_the_platform_so(
    exporter: Exporter, meta: MetaGraph
) -> None:
    moving = phone(1, platform_type=None, host_platform="ON_PREMISE")
    meta.numbers = [moving, phone(2)]
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert (
        value(
            text,
            "whatsapp_cloud_phone_number_platform",
            phone_number_id=moving["id"],
            platform="ON_PREMISE",
        )
        == 1
    )
    assert (
        value(
            text,
            "whatsapp_cloud_phone_number_platform",
            phone_number_id=phone(2)["id"],
            platform="CLOUD_API",
        )
        == 1
    )
    invalid = series(text, "whatsapp_exporter_invalid_fields_total")
    assert not any("platform" in k for k in invalid)


@pytest.mark.parametrize(
    ("fields", "limit"),
    [
        ({"whatsapp_business_manager_messaging_limit": "TIER_10K"}, 10000.0),
        (
            {"whatsapp_business_manager_messaging_limit": None, "messaging_limit_tier": "TIER_250"},
            250.0,
        ),
        (
            {
                "whatsapp_business_manager_messaging_limit": "TIER_100K",
                "messaging_limit_tier": "TIER_1K",
            },
            100000.0,
        ),
        ({"whatsapp_business_manager_messaging_limit": {"current_limit": "TIER_1K"}}, 1000.0),
        (
            {
                "whatsapp_business_manager_messaging_limit": {"current_limit": "TIER_50"},
                "messaging_limit_tier": "TIER_250",
            },
            50.0,
        ),
        ({"whatsapp_business_manager_messaging_limit": "TIER_UNLIMITED"}, math.inf),
        ({"whatsapp_business_manager_messaging_limit": "UNTIERED"}, None),
        ({"whatsapp_business_manager_messaging_limit": "TIER_5K"}, None),
        ({"whatsapp_business_manager_messaging_limit": None}, None),
    ],
    ids=[
        "newer",
        "deprecated-only",
        "both-newer-wins",
        "newer-as-object",
        "object-beside-deprecated",
        "unlimited",
        "untiered",
        "unknown-tier",
        "neither",
    ],
)
async def test_the_messaging_limit_comes_from_either_field_in_either_shape(
    exporter: Exporter, meta: MetaGraph, fields: dict[str, object], limit: float | None
) -> None:
    meta.numbers = [phone(1, **fields)]
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1
    assert value(text, "whatsapp_cloud_phone_number_messaging_limit") == limit
    assert value(text, "whatsapp_cloud_phone_number_status", status="CONNECTED") == 1


async def test_a_version_refusing_the_deprecated_limit_field_still_gives_the_limit(
    exporter: Exporter, meta: MetaGraph
) -> None:
    meta.refused = {"messaging_limit_tier"}
    poller = exporter.account(meta.base)
    await poller.poll_once()
    await poller.poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1
    assert value(text, "whatsapp_cloud_phone_number_messaging_limit") == 2000
    last = meta.requests[-1]
    assert "messaging_limit_tier" not in last.query["fields"]


async def test_fields_graph_leaves_out_drop_their_series_only(
    exporter: Exporter, meta: MetaGraph
) -> None:
    bare = {"id": "106540352200077"}
    meta.numbers = [bare, phone(1, throughput=None, health_status=None)]
    meta.account = {"id": WABA, "name": "Harbour Foods"}
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1
    assert value(text, "whatsapp_cloud_phone_number_info", phone_number_id=bare["id"]) == 1
    assert value(text, "whatsapp_cloud_phone_number_status", phone_number_id=bare["id"]) is None
    pid = phone(1)["id"]
    assert value(text, "whatsapp_cloud_phone_number_throughput", phone_number_id=pid) is None
    assert value(text, "whatsapp_cloud_phone_number_can_send_message", phone_number_id=pid) is None
    assert (
        value(text, "whatsapp_cloud_phone_number_status", phone_number_id=pid, status="CONNECTED")
        == 1
    )
    assert series(text, "whatsapp_cloud_can_send_message") == {}
    assert value(text, "whatsapp_cloud_account_info", name="Harbour Foods") == 1
    invalid = series(text, "whatsapp_exporter_invalid_fields_total")
    assert value(text, "whatsapp_exporter_invalid_fields_total", field="throughput") == 2
    assert value(text, "whatsapp_exporter_invalid_fields_total", field="health_status") == 3
    assert invalid


async def test_last_onboarded_time_in_graphs_offset_form_is_a_unix_timestamp(
    exporter: Exporter, meta: MetaGraph
) -> None:
    meta.numbers = [
        phone(1, last_onboarded_time="2023-08-22T19:05:34+0000"),
        phone(2, last_onboarded_time="2023-08-22T21:05:34+0200"),
    ]
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    for i in (1, 2):
        assert (
            value(
                text,
                "whatsapp_cloud_phone_number_last_onboarded_timestamp_seconds",
                phone_number_id=phone(i)["id"],
            )
            == 1692731134.0
        )


async def test_endless_pages_fail_the_poll_after_twenty_pages(
    exporter: Exporter, meta: MetaGraph
) -> None:
    meta.endless = True
    meta.numbers = [phone(1)]
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 0
    assert errors(text) == {"invalid_response": 1}
    assert len(meta.requests) == 1 + 20


async def test_a_next_page_on_another_host_is_not_followed_and_gets_no_token(
    exporter: Exporter, meta: MetaGraph
) -> None:
    other, server = await serve_meta_graph()
    try:
        meta.numbers = [phone(i) for i in range(150)]
        meta.public_base = other.base
        await exporter.account(meta.base).poll_once()
        meta.public_base = "https://graph.facebook.com"
        await exporter.account(meta.base, name="second").poll_once()
    finally:
        await server.close()
    text = await exporter.metrics()
    assert other.requests == []
    assert value(text, "whatsapp_cloud_up", account="harbour") == 0
    assert errors(text) == {"invalid_response": 1}
    assert errors(text, "second") == {"invalid_response": 1}
    assert len(meta.requests) == 4


@pytest.mark.parametrize("named", [True, False], ids=["message-names-it", "message-silent"])
@pytest.mark.parametrize(
    "refused",
    [
        {"platform_type"},
        {"whatsapp_business_manager_messaging_limit"},
        {"messaging_limit_tier"},
        {"platform_type", "whatsapp_business_manager_messaging_limit"},
    ],
    ids=["platform_type", "newer-limit", "deprecated-limit", "platform-and-newer-limit"],
)
async def test_an_edge_refusing_a_field_with_error_100_is_asked_again_without_it(
    exporter: Exporter, meta: MetaGraph, refused: set[str], named: bool
) -> None:
    meta.refused, meta.name_refused = refused, named
    meta.numbers = [
        phone(1, platform_type=None, host_platform="ON_PREMISE", messaging_limit_tier="TIER_1K")
    ]
    poller = exporter.account(meta.base)
    await poller.poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1, poller.snapshot.last_error_detail
    assert value(text, "whatsapp_cloud_phone_number_platform", platform="ON_PREMISE") == 1
    limit = value(text, "whatsapp_cloud_phone_number_messaging_limit")
    assert limit in (1000, 2000)
    asked = len(meta.requests)
    await poller.poll_once()
    assert len(meta.requests) == asked + 2  # remembered: no refused request again


async def test_an_entity_without_its_state_keeps_its_errors_and_is_counted_missing(
    exporter: Exporter, meta: MetaGraph
) -> None:
    entities = meta.account["health_status"]["entities"]
    del entities[1]["can_send_message"]  # the BUSINESS entity, blocked by error 141006
    await exporter.account(meta.base).poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1
    assert value(text, "whatsapp_cloud_entity_error_info", entity_type="BUSINESS") == 1
    assert value(text, "whatsapp_cloud_entity_can_send_message", entity_type="BUSINESS") is None
    assert (
        value(
            text, "whatsapp_cloud_entity_can_send_message", entity_type="WABA", status="AVAILABLE"
        )
        == 1
    )
    assert value(text, "whatsapp_exporter_invalid_fields_total", field="health_status") == 1


async def test_an_error_100_about_something_else_costs_no_field_for_later_polls(
    exporter: Exporter, meta: MetaGraph
) -> None:
    poller = exporter.account(meta.base)

    async def unsupported(request: web.Request) -> web.StreamResponse | None:
        if request.path.endswith("/phone_numbers"):
            return web.Response(body=graph_error(100), status=400, content_type="application/json")
        return None

    meta.fault = unsupported
    await poller.poll_once()
    text = await exporter.metrics()
    assert errors(text) == {"http": 1}
    meta.fault = None
    await poller.poll_once()
    text = await exporter.metrics()
    assert value(text, "whatsapp_cloud_up") == 1
    assert value(text, "whatsapp_cloud_phone_number_messaging_limit") == 2000
    asked = set(meta.requests[-1].query["fields"].split(","))
    assert asked >= CONTRACT_NUMBER_FIELDS
