"""Data that is no longer true leaves /metrics: a failing target's once stale, a container
that left the cluster at once.
"""

from __future__ import annotations

import asyncio
import time

from tests.conftest import (
    DATA_FAMILIES,
    HarnessFactory,
    has_data,
    series,
    up,
    wait_for,
)
from whatsapp_api_simulator.onprem import Simulator

# -- staleness and churn of containers --------------------------------------------------------


async def test_data_of_a_failing_target_is_withdrawn_once_stale(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    h = harness("wa", stale_after=0.3)
    await h.poll()
    inst.faults.status = 503
    await h.poll()
    text = h.metrics()
    assert up(text) == 0
    assert has_data(text), "data younger than stale-after is still served"
    await wait_for(lambda: not has_data(h.metrics()), within=1.5)
    text = h.metrics()
    assert up(text) == 0
    assert "whatsapp_exporter_last_success_timestamp_seconds" in text
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    for family in DATA_FAMILIES:
        assert not any(line.startswith(family + "{") for line in samples), family
    inst.faults.status = None
    await h.poll()
    assert has_data(h.metrics())


async def test_data_of_a_hanging_target_is_withdrawn_on_time_even_while_polls_back_off(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    h = harness("wa", stale_after=0.3, poll_interval=0.02, poll_timeout=0.1, max_backoff=5.0)
    await h.poll()
    succeeded = time.monotonic()
    inst.faults.hang = True
    task = asyncio.create_task(h.poller.run())
    try:
        await wait_for(lambda: not has_data(h.metrics()), within=1.5)
        assert 0.25 <= time.monotonic() - succeeded <= 1.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_container_that_leaves_the_cluster_leaves_metrics_at_once(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("mc", "multiconnect", masters=2, coreapps=4, shards=4)
    h = harness("mc")
    await h.poll()
    gone = inst.containers.pop(3)
    assert gone.container_id in h.metrics()
    await h.poll()
    text = h.metrics()
    assert gone.container_id not in text
    assert len(series(text, "whatsapp_socket_connected")) == 5
