"""A Cloud API account polled, rendered and served: its series, what an odd answer costs,
backoff and the usage wait, stale data withdrawn, the token never shown."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.cloudgraph import TOKEN, WABA_ID, FakeGraph, number
from tests.conftest import make_settings, series, wait_for
from whatsapp_support_exporter.cli.logs import LogfmtFormatter
from whatsapp_support_exporter.fleet.accounts import AccountPoller
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.fleet.schedule import Budget
from whatsapp_support_exporter.output.cloud_families import render_account
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.cloud.model import SERIES_PER_NUMBER
from whatsapp_support_exporter.upstream.http import new_session


class AccountHarness:
    """One account's poller, store and exposition, polled by hand."""

    def __init__(self, poller: AccountPoller, store: Store) -> None:
        self.poller = poller
        self.store = store
        self.exposition = Exposition(store)

    async def poll(self) -> float:
        return await self.poller.poll_once()

    def metrics(self) -> str:
        return self.exposition.render().decode()


AccountFactory = Callable[..., AccountHarness]


@pytest.fixture
async def account(graph: FakeGraph) -> AsyncIterator[AccountFactory]:
    session = new_session(8, 5.0)
    pollers: list[AccountPoller] = []

    def make(interval: float = 300.0, **overrides: Any) -> AccountHarness:
        fields: dict[str, Any] = {"token": SecretStr(TOKEN)}
        for key in ("token", "token_file", "api_version"):
            if key in overrides:
                fields[key] = overrides.pop(key)
        settings = make_settings(**overrides)
        store = Store(render_target, render_account)
        cloud = CloudAccount("acme", WABA_ID, graph_url=graph.base, interval=interval, **fields)
        poller = AccountPoller(cloud, session, store, settings, Budget(4), rng=random.Random(1))
        pollers.append(poller)
        return AccountHarness(poller, store)

    yield make
    for poller in pollers:
        await poller.stop()
    await session.close()


def lines_of(text: str, phone_number_id: str) -> list[str]:
    return [line for line in text.splitlines() if f'phone_number_id="{phone_number_id}"' in line]


async def test_a_number_is_exported_with_every_family_of_the_contract(
    account: AccountFactory, graph: FakeGraph
) -> None:
    graph.numbers = [number(1)]
    h = account()
    await h.poll()
    text = h.metrics()
    n = 'account="acme",phone_number_id="106540352240001"'
    for line in (
        f'whatsapp_cloud_phone_number_info{{{n},display_phone_number="+1 555-0101",'
        'verified_name="Shop 1",account_mode="LIVE"} 1',
        f'whatsapp_cloud_phone_number_quality{{{n},quality="GREEN"}} 1',
        f'whatsapp_cloud_phone_number_quality{{{n},quality="RED"}} 0',
        f'whatsapp_cloud_phone_number_status{{{n},status="CONNECTED"}} 1',
        f'whatsapp_cloud_phone_number_status{{{n},status="FLAGGED"}} 0',
        f'whatsapp_cloud_phone_number_platform{{{n},platform="CLOUD_API"}} 1',
        f'whatsapp_cloud_phone_number_platform{{{n},platform="ON_PREMISE"}} 0',
        f'whatsapp_cloud_phone_number_throughput{{{n},level="STANDARD"}} 1',
        f'whatsapp_cloud_phone_number_name_status{{{n},status="APPROVED"}} 1',
        f'whatsapp_cloud_phone_number_can_send_message{{{n},status="AVAILABLE"}} 1',
        f"whatsapp_cloud_phone_number_messaging_limit{{{n}}} 1000",
        f"whatsapp_cloud_phone_number_code_verified{{{n}}} 1",
        f"whatsapp_cloud_phone_number_last_onboarded_timestamp_seconds{{{n}}} 1692731134",
        'whatsapp_cloud_up{account="acme"} 1',
        f'whatsapp_cloud_account_info{{account="acme",waba_id="{WABA_ID}",name="Acme",'
        'account_review_status="APPROVED",business_verification_status="verified"} 1',
        'whatsapp_cloud_can_send_message{account="acme",status="LIMITED"} 1',
        'whatsapp_cloud_can_send_message{account="acme",status="BLOCKED"} 0',
        'whatsapp_cloud_entity_can_send_message{account="acme",entity_type="PHONE_NUMBER",'
        'entity_id="106540352240001",status="BLOCKED"} 1',
        'whatsapp_cloud_entity_error_info{account="acme",entity_type="PHONE_NUMBER",'
        'entity_id="106540352240001",error_code="141002"} 1',
        'whatsapp_exporter_cloud_polls_total{account="acme"} 1',
        'whatsapp_exporter_cloud_poll_errors_total{account="acme",reason="auth"} 0',
    ):
        assert line in text.splitlines(), line
    assert "whatsapp_exporter_cloud_last_success_timestamp_seconds{" in text
    assert "whatsapp_exporter_cloud_poll_duration_seconds{" in text
    for line in text.splitlines():
        if line.startswith(("whatsapp_cloud_", "whatsapp_exporter_cloud_")):
            assert line.split("{", 1)[1].startswith('account="acme"'), line
    assert "whatsapp_cloud_phone_number_status{" in text
    assert len(lines_of(text, "106540352240001")) <= SERIES_PER_NUMBER


async def test_unknown_values_are_series_of_their_own(
    account: AccountFactory, graph: FakeGraph
) -> None:
    graph.numbers = [
        number(
            1,
            quality_rating="PURPLE",
            status="ON_VACATION",
            name_status="SHINY",
            throughput={"level": "LUDICROUS"},
            platform_type="PIGEON",
            health_status={"can_send_message": "MAYBE"},
        )
    ]
    h = account()
    await h.poll()
    text = h.metrics()
    n = 'account="acme",phone_number_id="106540352240001"'
    for line in (
        f'whatsapp_cloud_phone_number_quality{{{n},quality="PURPLE"}} 1',
        f'whatsapp_cloud_phone_number_quality{{{n},quality="GREEN"}} 0',
        f'whatsapp_cloud_phone_number_status{{{n},status="ON_VACATION"}} 1',
        f'whatsapp_cloud_phone_number_name_status{{{n},status="SHINY"}} 1',
        f'whatsapp_cloud_phone_number_throughput{{{n},level="LUDICROUS"}} 1',
        f'whatsapp_cloud_phone_number_platform{{{n},platform="PIGEON"}} 1',
        f'whatsapp_cloud_phone_number_can_send_message{{{n},status="MAYBE"}} 1',
    ):
        assert line in text.splitlines(), line
    assert "whatsapp_exporter_invalid_fields_total" not in text
    assert len(lines_of(text, "106540352240001")) <= SERIES_PER_NUMBER


async def test_a_missing_field_drops_only_its_series_and_is_counted(
    account: AccountFactory, graph: FakeGraph
) -> None:
    graph.numbers = [number(1, quality_rating=None), number(2, status=["CONNECTED"])]
    h = account()
    await h.poll()
    await h.poll()
    text = h.metrics()
    first, second = lines_of(text, "106540352240001"), lines_of(text, "106540352240002")
    assert not any("quality" in line for line in first)
    assert any("_status{" in line and 'status="CONNECTED"} 1' in line for line in first)
    assert not any("phone_number_status{" in line for line in second)
    assert any('quality="GREEN"} 1' in line for line in second)
    invalid = series(text, "whatsapp_exporter_invalid_fields_total")
    assert invalid == {
        '{account="acme",field="quality_rating"}': 2,
        '{account="acme",field="status"}': 2,
    }
    assert series(text, "whatsapp_cloud_up") == {'{account="acme"}': 1}


async def test_the_platform_is_exported_under_either_field_name(
    account: AccountFactory, graph: FakeGraph
) -> None:
    graph.numbers = [number(1, platform_type=None, host_platform="ON_PREMISE"), number(2)]
    h = account()
    await h.poll()
    platform = series(h.metrics(), "whatsapp_cloud_phone_number_platform")
    assert platform['{account="acme",phone_number_id="106540352240001",platform="ON_PREMISE"}'] == 1
    assert platform['{account="acme",phone_number_id="106540352240002",platform="CLOUD_API"}'] == 1


async def test_the_messaging_limit_comes_from_either_field_unlimited_as_inf(
    account: AccountFactory, graph: FakeGraph
) -> None:
    graph.numbers = [
        number(
            1,
            whatsapp_business_manager_messaging_limit="TIER_UNLIMITED",
            messaging_limit_tier="TIER_1K",
        ),
        number(2, whatsapp_business_manager_messaging_limit=None, messaging_limit_tier="TIER_2K"),
        number(3, whatsapp_business_manager_messaging_limit="UNTIERED"),
    ]
    h = account()
    await h.poll()
    text = h.metrics()
    limits = series(text, "whatsapp_cloud_phone_number_messaging_limit")
    assert limits == {
        '{account="acme",phone_number_id="106540352240001"}': math.inf,
        '{account="acme",phone_number_id="106540352240002"}': 2000,
    }
    assert 'phone_number_id="106540352240001"} +Inf' in text


async def test_usage_is_exported_and_from_90_percent_the_next_poll_waits_longer(
    account: AccountFactory, graph: FakeGraph
) -> None:
    h = account(interval=60.0, max_backoff=3600.0)
    graph.usage = {"call_count": 40, "total_cputime": 12, "total_time": 30}
    delay = await h.poll()
    assert 57 <= delay <= 63
    assert series(h.metrics(), "whatsapp_cloud_api_usage_ratio") == {
        '{account="acme",kind="call_count"}': 0.4,
        '{account="acme",kind="total_cputime"}': 0.12,
        '{account="acme",kind="total_time"}': 0.3,
    }
    graph.usage = {"call_count": 40, "total_cputime": 12, "total_time": 90}
    assert await h.poll() == 120.0
    graph.usage = {
        "call_count": 95,
        "total_cputime": 12,
        "total_time": 30,
        "estimated_time_to_regain_access": 10,
    }
    assert await h.poll() == 600.0
    graph.usage = {"call_count": 10, "total_cputime": 1, "total_time": 1}
    assert 57 <= await h.poll() <= 63


async def test_rate_limited_backs_off_for_the_time_to_regain_access_up_to_max_backoff(
    account: AccountFactory, graph: FakeGraph
) -> None:
    graph.usage = {"call_count": 100, "estimated_time_to_regain_access": 3}
    graph.error = (400, {"error": {"code": 80007, "message": "rate limit"}})
    h = account(interval=10.0, max_backoff=3600.0)
    assert await h.poll() == 180.0
    h = account(interval=10.0, max_backoff=60.0)
    assert await h.poll() == 60.0
    text = h.metrics()
    assert (
        series(text, "whatsapp_exporter_cloud_poll_errors_total")[
            '{account="acme",reason="rate_limited"}'
        ]
        == 1
    )
    assert series(text, "whatsapp_cloud_up") == {'{account="acme"}': 0}


async def test_an_unavailable_graph_api_is_backed_off_and_recovered_from(
    account: AccountFactory, graph: FakeGraph
) -> None:
    graph.error = (500, {"error": {"code": 2, "message": "temporary"}})
    h = account(interval=10.0, max_backoff=100.0)
    delays = [await h.poll() for _ in range(4)]
    assert delays[0] == 10.0 and max(delays) > 20.0
    graph.error = None
    assert 9.5 <= await h.poll() <= 10.5
    assert h.poller.snapshot.up


async def test_data_is_withdrawn_after_three_intervals_without_success(
    account: AccountFactory, graph: FakeGraph
) -> None:
    h = account(interval=0.05)
    await h.poll()
    assert "whatsapp_cloud_phone_number_quality{" in h.metrics()
    graph.error = (503, None)
    await h.poll()
    assert "whatsapp_cloud_phone_number_quality{" in h.metrics()
    await wait_for(lambda: "whatsapp_cloud_phone_number_quality{" not in h.metrics())
    text = h.metrics()
    assert "whatsapp_cloud_account_info{" not in text
    assert series(text, "whatsapp_cloud_up") == {'{account="acme"}': 0}
    assert 'whatsapp_exporter_cloud_polls_total{account="acme"} 2' in text


async def test_a_token_file_rotated_while_running_heals_without_a_reload(
    account: AccountFactory, graph: FakeGraph, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    h = account(token=None, token_file=token_file)
    await h.poll()
    graph.token = "EAAG-the-rotated-one-42"
    await h.poll()
    assert not h.poller.snapshot.up
    token_file.write_text(graph.token + "\n")
    await h.poll()
    assert h.poller.snapshot.up
    assert (
        series(h.metrics(), "whatsapp_exporter_cloud_poll_errors_total")[
            '{account="acme",reason="auth"}'
        ]
        == 1
    )


async def test_a_wrong_token_is_in_no_log_line_no_series_and_no_page(
    account: AccountFactory, graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "EAAG-wrong-token-never-shown-0000"
    caplog.set_level(logging.DEBUG)
    h = account(token=SecretStr(wrong))
    await h.poll()
    assert h.poller.snapshot.last_error == "auth"
    assert wrong not in h.metrics()
    logged = "\n".join(LogfmtFormatter().format(record) for record in caplog.records)
    assert "Graph error 190" in logged  # the lines as the exporter writes them, extras too
    assert wrong not in logged
    assert wrong not in repr(h.poller.snapshot) and wrong not in repr(h.poller.account)


async def test_without_accounts_the_poller_sends_no_graph_request(graph: FakeGraph) -> None:
    settings = make_settings(poll_interval=0.02)
    store = Store(render_target, render_account)
    poller = Poller(settings, store, [], [])
    await poller.start()
    await asyncio.sleep(0.1)
    await poller.stop()
    assert graph.requests == []
    assert "whatsapp_cloud" not in Exposition(store).render().decode()


async def test_accounts_are_reloaded_as_targets_are(graph: FakeGraph) -> None:
    settings = make_settings(poll_interval=0.02)
    store = Store(render_target, render_account)
    first = CloudAccount("acme", WABA_ID, graph.base, interval=0.05, token=SecretStr(TOKEN))
    other = CloudAccount("beta", "1234", graph.base, interval=0.05, token=SecretStr(TOKEN))
    poller = Poller(settings, store, [], [first])
    await poller.start()
    try:
        await wait_for(lambda: store.accounts["acme"].polls >= 1)
        kept = poller.account_pollers["acme"]
        assert await poller.apply([], [first, other]) == (1, 0, 0)
        assert poller.account_pollers["acme"] is kept
        assert await poller.apply([], [other]) == (0, 0, 1)
        assert "acme" not in store.accounts
        assert 'account="acme"' not in Exposition(store).render().decode()
    finally:
        await poller.stop()
