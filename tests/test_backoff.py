"""Backoff: a failing upstream is asked less often, Retry-After is honoured within bounds,
a rejected login is not retried every poll. Schedules run with intervals of milliseconds.
"""

from __future__ import annotations

import asyncio
import email.utils
from typing import Any

import pytest

from tests.conftest import (
    USERNAME,
    FakeClock,
    HarnessFactory,
)
from whatsapp_api_simulator.onprem import Simulator

# -- backoff ---------------------------------------------------------------------------------


async def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets_on_success(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    inst.faults.status = 503
    h = harness("wa", poll_interval=0.01, max_backoff=1.0)
    delays = [await h.poll() for _ in range(12)]
    assert delays[0] == pytest.approx(0.01)
    assert max(delays) <= 1.0
    assert min(delays[-4:]) >= 0.5  # grown to the cap (jitter takes at most half)
    assert len(set(delays[-4:])) == 4  # jittered: a fleet does not retry in lockstep
    inst.faults.status = None
    delay = await h.poll()
    assert h.snapshot.up
    assert 0.0095 <= delay <= 0.0105


@pytest.mark.parametrize("status", [500, 404])
async def test_errors_that_are_not_overload_keep_the_normal_interval(
    harness: HarnessFactory, sim: Simulator, status: int
) -> None:
    sim.add_instance("wa", "single").faults.status = status
    h = harness("wa", poll_interval=0.01, max_backoff=1.0)
    delays = [await h.poll() for _ in range(6)]
    assert max(delays) <= 0.0105


async def _run_schedule(h: Any, seconds: float) -> None:
    task = asyncio.create_task(h.poller.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 429}, id="rate_limited"),
        pytest.param({"status": 503}, id="unavailable"),
        pytest.param({"hang": True}, id="timeout"),
    ],
)
async def test_a_failing_upstream_sees_far_fewer_requests_than_a_healthy_one(
    harness: HarnessFactory, sim: Simulator, fault: dict[str, Any]
) -> None:
    sim.add_instance("healthy", "single")
    failing = sim.add_instance("failing", "single")
    for key, value in fault.items():
        setattr(failing.faults, key, value)
    settings = {"poll_interval": 0.02, "poll_timeout": 0.02, "max_backoff": 0.3}
    polls = [harness("healthy", **settings), harness("failing", **settings)]
    await asyncio.gather(*(_run_schedule(h, 0.8) for h in polls))
    healthy = sim.instance("healthy").requests["support"]
    failed = failing.requests["support"]
    assert healthy >= 15
    assert failed <= 8, f"{failed} requests to a failing upstream vs {healthy} to a healthy one"


async def test_a_rejected_login_is_not_retried_at_every_interval(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    h = harness(
        "wa",
        api_key=None,
        username=USERNAME,
        password="not-the-password",
        poll_interval=0.02,
        max_backoff=0.3,
    )
    await _run_schedule(h, 0.8)
    # 40 intervals went by; backing off 0.02, 0.04, 0.08, 0.16, then ~0.3 leaves a handful
    assert 1 <= inst.requests["login"] <= 8
    assert h.snapshot.logins["failure"] == inst.requests["login"]
    assert inst.requests["support"] == 0


async def test_retry_after_in_seconds_is_honoured(harness: HarnessFactory, sim: Simulator) -> None:
    inst = sim.add_instance("wa", "single")
    inst.faults.status = 429
    inst.faults.retry_after = "42"
    h = harness("wa", poll_interval=0.01, max_backoff=100.0)
    assert await h.poll() == pytest.approx(42.0)
    inst.faults.status = 503
    inst.faults.retry_after = "7"
    assert await h.poll() == pytest.approx(7.0)


async def test_retry_after_as_an_http_date_is_honoured(
    harness: HarnessFactory, sim: Simulator
) -> None:
    clock = FakeClock()
    inst = sim.add_instance("wa", "single")
    inst.faults.status = 503
    inst.faults.retry_after = email.utils.formatdate(clock.now + 120, usegmt=True)
    h = harness("wa", poll_interval=0.01, max_backoff=300.0, clock=clock)
    assert await h.poll() == pytest.approx(120.0, abs=1.0)


async def test_retry_after_never_parks_a_target_past_max_backoff_and_garbage_is_ignored(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    inst.faults.status = 429
    inst.faults.retry_after = str(30 * 86400)
    h = harness("wa", poll_interval=0.01, max_backoff=5.0)
    assert await h.poll() == pytest.approx(5.0)
    for garbage in ("soon, maybe", "\u00b2", "-5", "1e3"):
        inst.faults.retry_after = garbage
        assert await h.poll() <= 5.0
        assert h.snapshot.last_error == "rate_limited"
    assert h.snapshot.errors["rate_limited"] == 5
