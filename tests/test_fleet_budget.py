"""The shared poll budget: hanging upstreams must not starve the healthy targets of a fleet."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import API_KEY, make_settings, wait_for
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_support_exporter.fleet.config import load_targets
from whatsapp_support_exporter.fleet.poller import Poller
from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.snapshot import TargetSnapshot
from whatsapp_support_exporter.output.store import Store

INTERVAL = 0.5


class RecordingStore(Store):
    """A store that remembers when each target last had a successful poll."""

    def __init__(self) -> None:
        super().__init__(render_target)
        self.successes: dict[str, list[float]] = {}
        self.withdrawn: set[str] = set()
        self._last: dict[str, float | None] = {}

    def update(self, snapshot: TargetSnapshot) -> None:
        if snapshot.up and snapshot.last_success != self._last.get(snapshot.name):
            self.successes.setdefault(snapshot.name, []).append(time.monotonic())
        self._last[snapshot.name] = snapshot.last_success
        if snapshot.up is False and snapshot.support is None and snapshot.name in self.successes:
            self.withdrawn.add(snapshot.name)
        super().update(snapshot)


async def test_twenty_hanging_targets_do_not_starve_twenty_healthy_ones(
    sim_base: str, sim: Simulator
) -> None:
    healthy = [f"ok-{i}" for i in range(20)]
    hanging = [f"hang-{i}" for i in range(20)]
    for name in healthy:
        sim.add_instance(name)
    for name in hanging:
        sim.add_instance(name).faults.hang = True
    settings = make_settings(
        targets=[f"{n}={sim_base}/{n}" for n in healthy + hanging],
        api_key=API_KEY,
        poll_interval=INTERVAL,
        poll_timeout=1.0,
        max_backoff=2.0,
        max_concurrency=4,
    )
    store = RecordingStore()
    poller = Poller(settings, store, load_targets(settings))
    await poller.start()
    try:
        # until every hanging target has failed once (before that nobody knows it hangs)
        await wait_for(lambda: all(poller.pollers[n].snapshot.polls for n in hanging), 8.0)
        started = time.monotonic()
        await asyncio.sleep(2.0)
    finally:
        await poller.stop()
    ended = time.monotonic()
    for name in healthy:
        store.successes[name] = [t for t in store.successes.get(name, []) if t >= started]

    assert store.withdrawn == set(), "healthy data went stale"
    for name in healthy:
        times = store.successes.get(name, [])
        assert times, f"{name} never polled"
        gaps = [b - a for a, b in zip([started, *times], [*times, ended], strict=True)]
        assert max(gaps) < 2.5 * INTERVAL, f"{name}: longest wait {max(gaps):.2f}s"
    for name in hanging:
        assert name not in store.successes
