"""Accounts in the fleet as targets are: sharded by name, reloaded from the cloud section
(unchanged ones kept), listed on the landing page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.cloudgraph import TOKEN, WABA_ID, FakeGraph, number
from tests.conftest import make_settings, wait_for
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.fleet.reload import Fleet
from whatsapp_support_exporter.fleet.sharding import shard_of
from whatsapp_support_exporter.output.cloud_families import render_account
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.web.app import create_app


def test_accounts_are_sharded_by_name_each_polled_by_one_replica() -> None:
    ids = [(f"acct-{i}", str(1000 + i)) for i in range(40)]
    parts = []
    for shard in range(3):
        settings = make_settings(
            targets=[], cloud_waba_ids=ids, cloud_token=TOKEN, shard=shard, total_shards=3
        )
        fleet = Fleet(settings, Store(render_target, render_account))
        fleet.initial()
        parts.append({a.name for a in fleet.accounts})
        assert all(shard_of(name, 3) == shard for name in parts[-1])
    assert set().union(*parts) == {name for name, _ in ids}
    assert sum(len(p) for p in parts) == 40 and all(parts)


def write(path: Path, accounts: list[dict[str, Any]], graph: FakeGraph) -> None:
    cloud = {"graph_url": graph.base, "token": TOKEN, "interval": "1m", "accounts": accounts}
    path.write_text(yaml.safe_dump({"cloud": cloud}))


async def test_a_reload_keeps_unchanged_accounts_and_removes_the_series_of_removed_ones(
    graph: FakeGraph, tmp_path: Path
) -> None:
    config = tmp_path / "config.yml"
    write(config, [{"name": "acme", "waba_id": WABA_ID}, {"name": "beta", "waba_id": "7"}], graph)
    settings = make_settings(targets=[], config_file=config)
    store = Store(render_target, render_account)
    fleet = Fleet(settings, store)
    poller = fleet.poller = Poller(settings, store, fleet.initial(), fleet.accounts)
    await poller.start()
    try:
        await wait_for(lambda: all(s.polls for s in store.accounts.values()), within=5)
        kept = poller.account_pollers["acme"]
        write(
            config, [{"name": "acme", "waba_id": WABA_ID}, {"name": "gamma", "waba_id": "8"}], graph
        )
        assert await fleet.reload("test") is None
        assert poller.account_pollers["acme"] is kept
        assert set(poller.account_pollers) == {"acme", "gamma"}
        assert set(store.accounts) == {"acme", "gamma"}
        config.write_text("cloud: {accounts: [{name: x, waba_id: nope}]}\n")
        error = await fleet.reload("test")
        assert error is not None and "cloud.accounts[0].waba_id" in error
        assert set(poller.account_pollers) == {"acme", "gamma"}
    finally:
        await poller.stop()


async def test_the_landing_page_lists_accounts_with_state_numbers_quality_and_error(
    graph: FakeGraph, aiohttp_client: Any, tmp_path: Path
) -> None:
    graph.numbers = [number(1), number(2, quality_rating="YELLOW")]
    config = tmp_path / "config.yml"
    (tmp_path / "bad").write_text("EAAG-rejected-token-shown-nowhere")
    config.write_text(
        yaml.safe_dump(
            {
                "cloud": {
                    "graph_url": graph.base,
                    "token": TOKEN,
                    "accounts": [
                        {"name": "acme", "waba_id": WABA_ID},
                        {"name": "rejected", "waba_id": "5", "token_file": "bad"},
                    ],
                }
            }
        )
    )
    settings = make_settings(targets=[], config_file=config)
    store = Store(render_target, render_account)
    fleet = Fleet(settings, store)
    poller = Poller(settings, store, fleet.initial(), fleet.accounts)
    client = await aiohttp_client(create_app(store, poller=poller))
    await wait_for(lambda: all(s.polls for s in store.accounts.values()), within=5)
    await wait_for(lambda: store.accounts["acme"].up, within=5)
    page = await (await client.get("/")).text()
    assert "Cloud API accounts" in page
    acme = next(line for line in page.splitlines() if "<td>acme</td>" in line)
    assert f"<td>{WABA_ID}</td>" in acme and ">warning<" in acme
    assert "<td>2</td><td>YELLOW</td>" in acme
    rejected = next(line for line in page.splitlines() if "<td>rejected</td>" in line)
    assert ">down<" in rejected and "Graph error 190" in rejected
    assert "EAAG-rejected-token-shown-nowhere" not in page
