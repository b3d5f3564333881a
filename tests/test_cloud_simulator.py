"""End to end against the project's simulated Graph API (strict about field names): every page,
every state, the other platform field name, a rotated token, the simulated rate limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import make_settings, series
from whatsapp_api_simulator.cloud import MISSING, GraphServer, GraphSimulator, start_graph
from whatsapp_support_exporter.fleet.accounts import AccountPoller
from whatsapp_support_exporter.fleet.schedule import Budget
from whatsapp_support_exporter.output.cloud_families import render_account
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.http import new_session


@pytest.fixture
async def server() -> AsyncIterator[GraphServer]:
    sim = GraphSimulator(token="sim-token-1", strict_fields=True)
    async with start_graph(sim=sim) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    session = new_session(4, 5.0)
    yield session
    await session.close()


def poller_for(
    server: GraphServer, session: aiohttp.ClientSession, waba_id: str, token_file: Path
) -> tuple[AccountPoller, Exposition]:
    store = Store(render_target, render_account)
    account = CloudAccount("acme", waba_id, graph_url=server.url, token_file=token_file)
    return AccountPoller(account, session, store, make_settings(), Budget(4)), Exposition(store)


async def test_an_account_over_several_pages_with_every_state_and_unknown_values(
    server: GraphServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    acct = server.sim.add_account("Odd", numbers=7, every_state=True, unknown_values=True)
    acct.page_size_cap = 3  # 19 numbers: 7 pages
    acct.platform_field = "host_platform"
    acct.numbers[0].overrides["quality_rating"] = MISSING
    (tmp_path / "token").write_text(server.token)
    poller, exposition = poller_for(server, session, acct.waba_id, tmp_path / "token")
    await poller.poll_once()
    assert poller.snapshot.up, poller.snapshot.last_error_detail
    assert poller.snapshot.numbers is not None
    assert len(poller.snapshot.numbers) == len(acct.numbers) == 19
    text = exposition.render().decode()
    info = series(text, "whatsapp_cloud_phone_number_info")
    assert len(info) == 19
    platforms = series(text, "whatsapp_cloud_phone_number_platform")
    assert sum(platforms.values()) == 19  # read under host_platform, every number
    invalid = series(text, "whatsapp_exporter_invalid_fields_total")
    assert invalid['{account="acme",field="quality_rating"}'] >= 1
    assert sum(series(text, "whatsapp_cloud_phone_number_quality").values()) == 18
    assert acct.requests["phone_numbers"] == 7


async def test_a_token_rotated_while_running_heals_when_its_file_does(
    server: GraphServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    acct = server.sim.add_account("Rotating", numbers=2)
    token_file = tmp_path / "token"
    token_file.write_text(server.token)
    poller, exposition = poller_for(server, session, acct.waba_id, token_file)
    await poller.poll_once()
    new = server.rotate_token()
    await poller.poll_once()
    assert poller.snapshot.last_error == "auth"
    token_file.write_text(new)
    await poller.poll_once()
    assert poller.snapshot.up
    text = exposition.render().decode()
    assert "sim-token-1" not in text and new not in text


async def test_the_simulated_rate_limit_is_rate_limited_with_its_regain_time(
    server: GraphServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    acct = server.sim.add_account("Busy", numbers=2)
    (tmp_path / "token").write_text(server.token)
    poller, exposition = poller_for(server, session, acct.waba_id, tmp_path / "token")
    await poller.poll_once()
    acct.use(200)  # the hour's calls are spent
    delay = await poller.poll_once()
    assert poller.snapshot.last_error == "rate_limited"
    assert delay >= 60  # the regain time (minutes left in the hour) or a skipped poll, capped
    usage = series(exposition.render().decode(), "whatsapp_cloud_api_usage_ratio")
    assert usage['{account="acme",kind="call_count"}'] == 1.0


@pytest.mark.parametrize(
    ("knob", "value", "detail"),
    [
        ("endless_pages", True, "more than 20 pages"),
        ("next_host", "graph.elsewhere.invalid", "another host"),
    ],
)
async def test_endless_or_foreign_pages_fail_the_poll_and_keep_the_other_accounts(
    server: GraphServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    knob: str,
    value: object,
    detail: str,
) -> None:
    bad = server.sim.add_account("Bad", numbers=12)
    bad.page_size_cap = 5
    setattr(bad, knob, value)
    good = server.sim.add_account("Good", numbers=12)
    good.page_size_cap = 5
    (tmp_path / "token").write_text(server.token)
    failing, _ = poller_for(server, session, bad.waba_id, tmp_path / "token")
    working, _ = poller_for(server, session, good.waba_id, tmp_path / "token")
    await failing.poll_once()
    await working.poll_once()
    assert failing.snapshot.last_error == "invalid_response"
    assert detail in failing.snapshot.last_error_detail
    assert bad.requests["phone_numbers"] <= 20
    assert working.snapshot.up and working.snapshot.numbers is not None
    assert len(working.snapshot.numbers) == 12
