"""Containers and targets that come and go leave no series and no memory behind."""

from __future__ import annotations

import asyncio
import gc
import random
import re
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.fleet.poller import TargetPoller
from whatsapp_support_exporter.fleet.schedule import Budget
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.onprem.target import Credentials, Target

from .conftest import API_KEY, Harness, make_settings

CYCLES = 150


def container_ids(text: str, target: str) -> set[str]:
    return set(re.findall(rf'target="{target}",host="[^"]*",container_id="([^"]*)"', text))


def targets_in(text: str) -> set[str]:
    return set(re.findall(r'^whatsapp_[a-z_]+\{target="([^"]*)"', text, re.M))


def cluster(rng: random.Random, cycle: int) -> dict[str, Any]:
    """A multiconnect response with a random, ever-new set of containers."""
    support = {}
    for i in range(rng.randint(1, 8)):
        support[f"host{i}:c{cycle:04d}{i}"] = {
            "role": "coreapp" if i else "primary_master",
            "shards": [[i, i]],
            "socket_conn": rng.choice(["UP", "DN", "SC", f"NEW{cycle}"]),
            "free_space_data": rng.randrange(10**9),
            "schema": {"message": cycle},
            "version": f"v2.{cycle}",
        }
    return support


@pytest.fixture
async def fast_sim() -> AsyncIterator[tuple[Simulator, str]]:
    """A simulator without the documented rate limit: churn polls far faster than 20/s."""
    sim = Simulator(api_key=API_KEY, rate=1e9, burst=10**9)
    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server()
    yield sim, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_churning_containers_and_targets_leave_nothing_behind(
    fast_sim: tuple[Simulator, str], harness: Callable[..., Harness]
) -> None:
    sim, sim_base = fast_sim
    rng = random.Random(7)
    settings = make_settings(collector_health=False, collector_shards=False)
    store = Store(render_target)
    exposition = Exposition(store)
    session = harness("unused").client.session  # a session the fixture closes
    budget = Budget(4)
    credentials = Credentials(api_key=SecretStr(API_KEY))
    live: dict[str, TargetPoller] = {}

    def add_target(name: str) -> None:
        inst = sim.instances.get(name) or sim.add_instance(name, "multiconnect")
        inst.payload = cluster(rng, 0)
        target = Target(name, f"{sim_base}/{name}", credentials)
        live[name] = TargetPoller(target, session, store, settings, budget, rng=random.Random(1))

    async def remove_target(name: str) -> None:
        await live.pop(name).stop()
        store.delete(name)

    for i in range(4):
        add_target(f"t{i}")

    async def cycle(n: int) -> None:
        if rng.random() < 0.3 and len(live) > 1:
            await remove_target(rng.choice(sorted(live)))
        newcomer = f"t{rng.randrange(8)}"
        if rng.random() < 0.3 and newcomer not in live:
            add_target(newcomer)
        for name in live:
            sim.instance(name).payload = cluster(rng, n)
        await asyncio.gather(*(p.poll_once() for p in live.values()))
        assert all(p.snapshot.up for p in live.values())
        text = exposition.render().decode()
        assert targets_in(text) == set(live)
        for name in live:
            expected = {key.rpartition(":")[2] for key in sim.instance(name).payload or {}}
            assert container_ids(text, name) == expected
        assert text.count("NEW") <= sum(len(sim.instance(n).payload or {}) for n in live)

    for n in range(20):  # warm up: caches, sessions, interned strings
        await cycle(n)
    gc.collect()
    tracemalloc.start()
    try:
        first = tracemalloc.take_snapshot()
        for n in range(20, 20 + CYCLES):
            await cycle(n)
        gc.collect()
        last = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = [
        tracemalloc.Filter(True, "*/whatsapp_support_exporter/*"),
        tracemalloc.Filter(False, "*/whatsapp_api_simulator/*"),
    ]
    grown = sum(
        stat.size_diff
        for stat in last.filter_traces(ours).compare_to(first.filter_traces(ours), "filename")
    )
    assert grown < 256 * 1024, f"exporter allocations grew by {grown} bytes over {CYCLES} cycles"
    for name in list(live):
        await remove_target(name)
    text = exposition.render().decode()
    assert targets_in(text) == set()
