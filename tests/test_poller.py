"""The schedule: polls of many targets fall due together so they share the process's wake-ups."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import API_KEY, FakeClock, exporter_app_factory, make_settings, wait_for
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.fleet.config import load_targets
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.fleet.schedule import POLL_TICK, on_tick, tick_for
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.store import Store


@pytest.mark.parametrize(
    ("now", "delay", "expected_at"),
    [(100.0, 30.0, 130.0), (100.01, 29.9, 130.0), (100.0, 29.99, 130.0), (100.2, 30.0, 130.25)],
)
def test_a_delay_is_rounded_up_to_the_next_grid_point(
    now: float, delay: float, expected_at: float
) -> None:
    wait = on_tick(now, delay, POLL_TICK)
    assert wait >= delay
    assert now + wait == pytest.approx(expected_at)


def test_the_grid_is_fine_enough_for_short_intervals() -> None:
    assert tick_for(30) == POLL_TICK
    assert tick_for(0.08) == pytest.approx(0.01)


async def test_polls_of_many_targets_start_together_on_the_grid(
    aiohttp_client: Any, sim: Simulator, sim_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    from whatsapp_support_exporter.upstream.onprem.client import Answer, Client

    original = Client.attempt

    async def recording(self: Client, **kwargs: bool) -> Answer:
        starts.append(loop.time())
        return await original(self, **kwargs)

    monkeypatch.setattr(Client, "attempt", recording)
    names = [f"wa{i}" for i in range(6)]
    for name in names:
        sim.add_instance(name, "single")
    settings = make_settings(
        targets=[f"{n}={sim_base}/{n}" for n in names], api_key=API_KEY, poll_interval=0.4
    )
    app, store = exporter_app_factory(settings)
    await aiohttp_client(app)
    await wait_for(lambda: all(s.polls >= 2 for s in store.snapshots.values()))
    tick = tick_for(0.4)
    distinct = {round(t / tick) for t in starts}
    # six targets with random start offsets, yet their polls began on few grid points
    assert len(distinct) < len(starts)
    # a start is a wake-up of the loop, late by however busy the machine is: most, not all, are
    # within a fifth of a tick of a grid point (random starts would be 40%)
    on_grid = [t for t in starts if abs(t / tick - round(t / tick)) < 0.2]
    assert len(on_grid) >= 0.8 * len(starts), starts


async def test_a_lone_target_polls_at_once_without_a_start_delay(
    sim: Simulator, sim_base: str
) -> None:
    """A sidecar's first poll is not held back by the spread a fleet needs."""
    sim.add_instance("wa", "single")
    clock = FakeClock()
    settings = make_settings(targets=[f"wa={sim_base}/wa"], api_key=API_KEY, poll_interval=30)
    store = Store(render_target)
    poller = Poller(settings, store, load_targets(settings), sleep=clock.sleep)
    await poller.start()
    try:
        await wait_for(lambda: store.snapshots["wa"].polls >= 2)
    finally:
        await poller.stop()
    assert store.snapshots["wa"].up
    # the first wait came after the first poll: an interval (jittered by 5%), not a start delay
    assert clock.sleeps[0] >= 0.95 * 30, clock.sleeps


async def test_a_fleet_spreads_its_first_polls_over_at_most_a_second(
    sim: Simulator, sim_base: str
) -> None:
    """Many targets do not all connect in the same instant, and none waits long to start."""
    names = [f"wa{i}" for i in range(300)]
    for name in names:
        sim.add_instance(name, "single")
    clock = FakeClock()
    settings = make_settings(
        targets=[f"{n}={sim_base}/{n}" for n in names], api_key=API_KEY, poll_interval=30
    )
    poller = Poller(settings, Store(render_target), load_targets(settings), sleep=clock.sleep)
    await poller.start()
    await asyncio.sleep(0)  # every poller's first step: its start delay
    await poller.stop()
    first = clock.sleeps[: len(names)]
    assert len(first) == len(names)
    assert all(0 < delay <= 1.0 + POLL_TICK for delay in first)
    assert len({round(delay / POLL_TICK) for delay in first}) > 1  # on more than one grid point
