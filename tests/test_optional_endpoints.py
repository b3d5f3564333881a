"""The optional endpoints (/v1/health, /v1/account/shards): their series, their failures (which
never take the target down), what is asked how often, and a body promtool accepts.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import PASSWORD, USERNAME, Harness, HarnessFactory, series
from whatsapp_api_simulator.onprem import Simulator


def endpoint_errors(h: Harness, endpoint: str) -> dict[str, float]:
    out = {}
    for labels, value in series(h.metrics(), "whatsapp_exporter_collector_errors_total").items():
        if f'collector="{endpoint}"' in labels:
            out[labels.split('reason="')[1].rstrip('"}')] = value
    return out


async def test_a_multiconnect_target_exports_each_containers_gateway_and_the_shard_count(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("mc", "multiconnect", masters=2, coreapps=3, shards=2)
    h = harness("mc")
    await h.poll()
    await h.poll()
    text = h.metrics()
    gateways = series(text, "whatsapp_gateway_status")
    for c in inst.containers:
        labels = f'target="mc",host="{c.hostname}",container_id="{c.container_id}"'
        current = [k for k, v in gateways.items() if labels in k and v == 1]
        assert current == [f'{{{labels},state="{inst.gateway_status(c)}"}}']
    assert series(text, "whatsapp_shards_configured") == {'{target="mc"}': 2.0}
    success = series(text, "whatsapp_exporter_collector_success")
    assert success == {'{target="mc",collector="health"}': 1, '{target="mc",collector="shards"}': 1}


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("status_500", "http"),
        ("hang", "timeout"),
        ("invalid_json", "invalid_response"),
        ("missing", "http"),
    ],
)
async def test_a_failing_health_endpoint_keeps_the_target_up_and_is_counted(
    harness: HarnessFactory, sim: Simulator, fault: str, reason: str
) -> None:
    inst = sim.add_instance("wa")
    inst.socket_conn = "UP"  # no clock-driven flap: the assertion below reads the socket
    faults = inst.faults_for("health")
    if fault == "status_500":
        faults.status = 500
    elif fault == "hang":
        faults.hang = True
    elif fault == "invalid_json":
        faults.body = b"{not json"
    else:
        faults.missing = True
    h = harness("wa", poll_timeout=0.3)
    await h.poll()
    await h.poll()
    text = h.metrics()
    assert series(text, "whatsapp_up") == {'{target="wa"}': 1.0}
    assert series(text, "whatsapp_socket_connected") == {'{target="wa"}': 1.0}
    assert endpoint_errors(h, "health")[reason] == 2
    assert series(text, "whatsapp_exporter_collector_success") == {
        '{target="wa",collector="health"}': 0
    }
    assert "whatsapp_gateway_status{" not in text


@pytest.mark.parametrize("login", [False, True], ids=["api-key", "login"])
async def test_with_both_optional_endpoints_off_the_upstream_sees_only_support_requests(
    harness: HarnessFactory, sim: Simulator, login: bool
) -> None:
    inst = sim.add_instance("mc", "multiconnect", masters=1, coreapps=2, shards=2)
    credentials: dict[str, str | None] = (
        {"api_key": None, "username": USERNAME, "password": PASSWORD} if login else {}
    )
    h = harness("mc", collector_health=False, collector_shards=False, **credentials)
    for _ in range(12):
        await h.poll()
    assert h.snapshot.up
    expected = {"support": 12, "login": 1} if login else {"support": 12}
    assert dict(inst.requests) == expected
    text = h.metrics()
    assert "whatsapp_gateway_status{" not in text
    assert "whatsapp_shards_configured{" not in text


async def test_shards_are_asked_at_most_every_tenth_poll_of_a_multiconnect_target(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("mc", "multiconnect", masters=1, coreapps=2, shards=2)
    h = harness("mc")
    await h.poll()
    assert inst.requests["shards"] == 1  # the first poll already knows the shard count
    for _ in range(24):
        await h.poll()
    assert inst.requests["shards"] == 3  # polls 1, 11 and 21
    assert inst.requests["health"] == 25


async def test_a_single_instance_never_asks_for_shards(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa")
    h = harness("wa")
    for _ in range(12):
        await h.poll()
    assert inst.requests["shards"] == 0
    assert "whatsapp_shards_configured{" not in h.metrics()


async def test_a_deprecated_api_is_exported_as_its_status(
    harness: HarnessFactory, sim: Simulator
) -> None:
    sim.add_instance("wa").api_status = "deprecated"
    h = harness("wa")
    await h.poll()
    status = series(h.metrics(), "whatsapp_api_status")
    assert status['{target="wa",status="deprecated"}'] == 1
    assert [k for k, v in status.items() if v == 1] == ['{target="wa",status="deprecated"}']


async def test_promtool_accepts_the_live_body_of_a_cluster_and_a_failing_optional_endpoint(
    harness: HarnessFactory, sim: Simulator
) -> None:
    sim.add_instance("mc", "multiconnect", masters=2, coreapps=3, shards=2)
    sim.add_instance("wa").faults_for("health").status = 500
    mc, wa = harness("mc"), harness("wa")
    for _ in range(2):
        await mc.poll()
        await wa.poll()
    for h in (mc, wa):
        promtool = await asyncio.create_subprocess_exec(
            "/usr/bin/promtool",
            "check",
            "metrics",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await promtool.communicate(h.metrics().encode())
        # neither an error nor a lint hint
        assert promtool.returncode == 0 and not out.strip(), out.decode()
