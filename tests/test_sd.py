"""The multi-target pattern as Prometheus sees it: /sd names this replica's targets, and
/metrics?target= serves one of them from the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from tests.conftest import API_KEY, make_settings, wait_for
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.fleet.reload import Fleet
from whatsapp_support_exporter.fleet.sharding import shard_of
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.web.app import create_app

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]
NAMES = [f"wa-{i}" for i in range(8)]
OPENMETRICS = "application/openmetrics-text;version=1.0.0"


class Replica:
    def __init__(
        self, client: TestClient[Any, Any], fleet: Fleet, poller: Poller, store: Store
    ) -> None:
        self.client, self.fleet, self.poller, self.store = client, fleet, poller, store


StartReplica = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def start_replica(
    aiohttp_client: AiohttpClient, sim: Simulator, sim_base: str, tmp_path: Path
) -> AsyncIterator[StartReplica]:
    """Factory: one replica (``shard`` of ``total``) of a fleet of eight labelled targets."""
    for name in NAMES:
        sim.add_instance(name, "single")
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "auths": {"k": {"api_key": API_KEY}},
                "targets": [
                    {"name": n, "url": f"{sim_base}/{n}", "auth": "k", "labels": {"env": "prod"}}
                    for n in NAMES
                ],
            }
        )
    )

    async def start(shard: int = 0, total: int = 1) -> Replica:
        settings = make_settings(targets=[], config_file=config, shard=shard, total_shards=total)
        store = Store(render_target)
        fleet = Fleet(settings, store)
        poller = fleet.poller = Poller(settings, store, fleet.initial())
        client = await aiohttp_client(create_app(store, poller=poller))
        return Replica(client, fleet, poller, store)

    yield start


def owned(shard: int, total: int) -> list[str]:
    return [n for n in NAMES if shard_of(n, total) == shard]


async def test_sd_lists_this_replicas_targets_with_param_target_only(
    start_replica: StartReplica,
) -> None:
    replica = await start_replica(shard=1, total=2)
    response = await replica.client.get("/sd", headers={"Host": "wa-exporter-1.wa:10042"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    groups = await response.json()
    assert sorted(g["labels"]["__param_target"] for g in groups) == sorted(owned(1, 2))
    assert 0 < len(groups) < len(NAMES)
    for group in groups:
        assert group["targets"] == ["wa-exporter-1.wa:10042"]  # the address Prometheus used
        name = group["labels"]["__param_target"]
        # Not the target's own labels: whatsapp_target_info carries them, and a label both on
        # the target and on a series comes out twice (`env` and `exported_env`).
        assert group["labels"] == {"__param_target": name}


async def test_sd_is_an_empty_list_for_a_replica_without_targets(
    start_replica: StartReplica,
) -> None:
    total = 64
    idle = next(s for s in range(total) if not owned(s, total))
    replica = await start_replica(shard=idle, total=total)
    response = await replica.client.get("/sd")
    assert response.status == 200
    assert await response.json() == []


async def test_metrics_of_one_target_come_from_the_cache_with_no_upstream_request(
    start_replica: StartReplica, sim: Simulator
) -> None:
    replica = await start_replica()
    await wait_for(lambda: all(s.up for s in replica.store.snapshots.values()))
    await replica.poller.stop()  # from now on any upstream request would be the scrape's
    before = {n: dict(sim.instance(n).requests) for n in NAMES}

    response = await replica.client.get("/metrics", params={"target": "wa-3"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await response.text()
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert 'whatsapp_up{target="wa-3"} 1' in samples
    assert any(s.startswith("whatsapp_free_space_bytes{") for s in samples)
    assert all('target="wa-3"' in s for s in samples), [
        s for s in samples if 'target="wa-3"' not in s
    ]

    response = await replica.client.get(
        "/metrics", params={"target": "wa-3"}, headers={"Accept": OPENMETRICS}
    )
    assert response.headers["Content-Type"].startswith(
        "application/openmetrics-text; version=1.0.0"
    )
    body = await response.text()
    assert body.endswith("# EOF\n") and 'whatsapp_up{target="wa-3"} 1' in body

    assert {n: dict(sim.instance(n).requests) for n in NAMES} == before


async def test_metrics_of_a_target_this_replica_does_not_poll_is_404(
    start_replica: StartReplica,
) -> None:
    replica = await start_replica(shard=0, total=2)
    theirs = owned(1, 2)[0]
    mine = owned(0, 2)[0]
    assert (await replica.client.get("/metrics", params={"target": mine})).status == 200
    assert (await replica.client.get("/metrics", params={"target": theirs})).status == 404
    assert (await replica.client.get("/metrics", params={"target": "nope"})).status == 404


async def test_a_target_removed_by_a_reload_leaves_sd_and_its_metrics_are_404(
    start_replica: StartReplica, sim_base: str
) -> None:
    replica = await start_replica()
    assert replica.fleet.settings.config_file is not None
    config = replica.fleet.settings.config_file
    data = yaml.safe_load(config.read_text())
    data["targets"] = [t for t in data["targets"] if t["name"] != "wa-5"]
    config.write_text(yaml.safe_dump(data))
    assert await replica.fleet.reload("test") is None
    groups = await (await replica.client.get("/sd")).json()
    assert sorted(g["labels"]["__param_target"] for g in groups) == sorted(
        n for n in NAMES if n != "wa-5"
    )
    assert (await replica.client.get("/metrics", params={"target": "wa-5"})).status == 404
