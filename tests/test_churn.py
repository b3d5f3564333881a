"""Containers and targets that come and go leave no series and no memory behind: a fleet
renamed by reload after reload keeps the footprint of one fleet."""

from __future__ import annotations

import asyncio
import gc
import random
import re
import statistics
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.cli.main import settle_gc
from whatsapp_support_exporter.fleet.poller import Poller, TargetPoller
from whatsapp_support_exporter.fleet.schedule import Budget
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.onprem.client import Client
from whatsapp_support_exporter.upstream.onprem.target import Credentials, Target

from .conftest import API_KEY, PASSWORD, USERNAME, Harness, make_settings, wait_for

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


# -- a fleet renamed by reloads ---------------------------------------------------------------

FLEET = 30
GENERATIONS = 12


def fleet_of(sim: Simulator, base: str, generation: int, renamed: int = FLEET) -> list[Target]:
    """The fleet of one generation: its first ``renamed`` targets carry the generation's names.

    Half the fleet logs in (a token and a login counter per target), half uses the API key."""
    login = Credentials(username=USERNAME, password=SecretStr(PASSWORD))
    key = Credentials(api_key=SecretStr(API_KEY))
    targets = []
    for i in range(FLEET):
        name = f"g{generation}-t{i}" if i < renamed else f"kept-t{i}"
        instance = f"i{i}"
        if instance not in sim.instances:
            sim.add_instance(instance, "multiconnect" if i % 3 == 0 else "single")
        targets.append(Target(name, f"{base}/{instance}", login if i % 2 else key))
    return targets


@pytest.fixture
async def login_sim() -> AsyncIterator[tuple[Simulator, str]]:
    """A simulator taking the API key and logins, without the documented rate limit."""
    sim = Simulator(api_key=API_KEY, username=USERNAME, password=PASSWORD, rate=1e9, burst=10**9)
    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server()
    yield sim, str(server.make_url("")).rstrip("/")
    await server.close()


async def polled(poller: Poller) -> None:
    """Until every target of the fleet has answered once (data, token, connection in use)."""
    await wait_for(lambda: all(p.snapshot.up for p in poller.pollers.values()), 10.0)


async def test_targets_removed_by_reloads_are_freed_at_once_without_a_garbage_collection(
    login_sim: tuple[Simulator, str],
) -> None:
    """What a reload removes goes when the last reference goes: no reference cycle holds it
    until a collection that may come late (or, if the collector was frozen, never)."""
    sim, base = login_sim
    settings = make_settings(poll_interval=0.05, collector_health=True)
    store = Store(render_target)
    exposition = Exposition(store)
    poller = Poller(settings, store, fleet_of(sim, base, 0, renamed=FLEET // 3))
    gone: list[tuple[str, weakref.ref[Any]]] = []
    gc.collect()
    gc.disable()
    try:
        await poller.start()
        await polled(poller)
        for generation in range(1, GENERATIONS):
            old = dict(poller.pollers)
            await poller.apply(fleet_of(sim, base, generation, renamed=FLEET // 3))
            for name, target_poller in old.items():
                if name not in poller.pollers:
                    gone += [
                        (name, weakref.ref(target_poller)),
                        (name, weakref.ref(target_poller.client)),
                        (name, weakref.ref(target_poller.snapshot)),
                        (name, weakref.ref(target_poller.target)),
                    ]
            del old, target_poller
            await polled(poller)
            exposition.render(openmetrics=True, gzip=True)
        survivors = sorted({name for name, ref in gone if ref() is not None})
        assert len(gone) == 4 * (FLEET // 3) * (GENERATIONS - 1)
        assert survivors == [], f"removed targets still in memory: {survivors[:5]}"
    finally:
        gc.enable()
        await poller.stop()
    text = exposition.render().decode()
    assert targets_in(text) == {t.name for t in fleet_of(sim, base, GENERATIONS - 1, FLEET // 3)}


def of_removed_targets(current: set[str]) -> dict[str, int]:
    """Pollers, clients and targets alive that belong to no current target (frozen included)."""
    gc.unfreeze()
    counts = {"TargetPoller": 0, "Client": 0, "Target": 0}
    for o in gc.get_objects():
        kind = type(o)
        if kind in (TargetPoller, Client):
            counts[kind.__name__] += o.target.name not in current
        elif kind is Target and o.name.startswith(("g", "kept")):  # not the settings' own
            counts["Target"] += o.name not in current
    return counts


class Gate:
    """The pollers' sleep: while open, a short real wait; once closed, every poller stops at it
    after its poll in flight, so memory can be measured with nothing in flight."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.opened.set()
        self.waiting = 0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0.01)
        self.waiting += 1
        try:
            await self.opened.wait()
        finally:
            self.waiting -= 1

    async def quiet(self, pollers: int) -> None:
        self.opened.clear()
        await wait_for(lambda: self.waiting == pollers, 10.0)


async def test_a_fleet_renamed_whole_by_every_reload_keeps_a_flat_footprint(
    login_sim: tuple[Simulator, str],
) -> None:
    """Generation after generation of new names, with the collector settled as the exporter
    settles it (and frozen once the first fleet runs, the worst moment): the exporter's memory
    and its objects stay those of one fleet."""
    sim, base = login_sim
    settings = make_settings(poll_interval=5, poll_timeout=5, collector_health=True)
    store = Store(render_target)
    exposition = Exposition(store)
    gate = Gate()
    poller = Poller(settings, store, fleet_of(sim, base, 0), sleep=gate.sleep)
    threshold = gc.get_threshold()
    settle_gc()
    ours = [
        tracemalloc.Filter(True, "*/whatsapp_support_exporter/*"),
        tracemalloc.Filter(False, "*/whatsapp_api_simulator/*"),
    ]
    try:
        await poller.start()
        await polled(poller)
        gc.freeze()
        sizes = []
        tracemalloc.start()
        for generation in range(1, GENERATIONS):
            gate.opened.set()
            await poller.apply(fleet_of(sim, base, generation))
            await polled(poller)
            await gate.quiet(len(poller.pollers))
            exposition.render(openmetrics=True, gzip=True)
            gc.collect()
            snapshot = tracemalloc.take_snapshot().filter_traces(ours)
            sizes.append(sum(stat.size for stat in snapshot.statistics("filename")))
        tracemalloc.stop()
        counts = of_removed_targets(set(poller.pollers))
    finally:
        tracemalloc.stop()
        gc.unfreeze()
        gc.set_threshold(*threshold)
        gate.opened.set()
        await poller.stop()
    assert counts == {"TargetPoller": 0, "Client": 0, "Target": 0}, counts
    # measured with no poll in flight: one generation kept would add hundreds of KiB
    grown = statistics.median(sizes[-4:]) - statistics.median(sizes[1:5])
    assert grown < 64 * 1024, f"exporter memory by generation: {sizes}"
