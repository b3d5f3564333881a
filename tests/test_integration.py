"""End to end through the simulator: what an operator sees on /metrics after real polls."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import (
    API_KEY,
    PASSWORD,
    SECRETS,
    USERNAME,
    HarnessFactory,
    exporter_app_factory,
    make_settings,
    series,
    wait_for,
)
from tests.hostile import FAKE_DB_PASSWORD
from whatsapp_api_simulator.onprem import Simulator


async def test_single_instance_is_exported_without_host_labels(
    harness: HarnessFactory, sim: Simulator
) -> None:
    sim.add_instance("wa", "single")
    h = harness("wa")
    await h.poll()
    text = h.metrics()
    assert series(text, "whatsapp_up") == {'{target="wa"}': 1.0}
    assert series(text, "whatsapp_socket_connected").keys() == {'{target="wa"}'}
    assert (
        'whatsapp_free_space_bytes{target="wa",directory="media_incoming"} 9.223372036853727e+18'
        in text
    )
    assert "host=" not in "".join(
        line for line in text.splitlines() if line.startswith("whatsapp_")
    )


async def test_multiconnect_cluster_reports_each_container_with_role_and_shards(
    harness: HarnessFactory, sim: Simulator
) -> None:
    sim.add_instance("mc", "multiconnect", masters=2, coreapps=4, shards=4)
    h = harness("mc")
    await h.poll()
    text = h.metrics()
    roles = series(text, "whatsapp_role")
    primaries = [k for k, v in roles.items() if 'role="primary_master"' in k and v == 1]
    assert len(primaries) == 1
    owned = series(text, "whatsapp_shard_owned")
    shard_ids = sorted(int(re.search(r'shard="(-?\d+)"', k).group(1)) for k in owned)  # type: ignore[union-attr]
    assert shard_ids == [-1, 0, 1, 2, 3]
    assert len(series(text, "whatsapp_socket_connected")) == 6


async def test_one_login_serves_many_polls(harness: HarnessFactory, sim: Simulator) -> None:
    sim.add_instance("wa", "single")
    h = harness("wa", api_key=None, username=USERNAME, password=PASSWORD)
    for _ in range(5):
        await h.poll()
    assert sim.instance("wa").requests["login"] == 1
    assert sim.instance("wa").requests["support"] == 5
    assert 'whatsapp_exporter_logins_total{target="wa",result="success"} 1' in h.metrics()


async def test_rejected_api_key_switches_the_target_to_a_login_token_and_remembers(
    harness: HarnessFactory, sim: Simulator
) -> None:
    inst = sim.add_instance("wa", "single")
    inst.faults.reject_api_key = True
    h = harness("wa", api_key=API_KEY, username=USERNAME, password=PASSWORD)
    for _ in range(3):
        await h.poll()
    assert h.snapshot.up
    # the key was tried once; every later poll went straight to the token
    assert inst.requests["support"] == 4
    assert inst.requests["login"] == 1


async def test_expired_token_is_renewed_by_logging_in_again(harness: HarnessFactory) -> None:
    from tests.conftest import FakeClock

    clock = FakeClock()
    sim = Simulator(api_key=API_KEY, username=USERNAME, password=PASSWORD, clock=clock)
    sim.add_instance("wa", "single")
    from aiohttp.test_utils import TestServer

    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/wa"))
        h = harness("wa", api_key=None, username=USERNAME, password=PASSWORD, clock=clock, url=url)
        await h.poll()
        clock.advance(7 * 86400 + 1)  # past the token's lifetime
        await h.poll()
        assert h.snapshot.up
        assert sim.instance("wa").requests["login"] == 2
    finally:
        await server.close()


async def test_secrets_env_and_phone_number_never_reach_metrics_or_landing_page(
    aiohttp_client: Any, sim: Simulator, sim_base: str
) -> None:
    sim.add_instance("wa", "single")
    sim.add_instance("mc", "multiconnect", masters=1, coreapps=2, shards=2)
    settings = make_settings(
        targets=[f"wa={sim_base}/wa", f"mc={sim_base}/mc"],
        api_key=API_KEY,
        username=USERNAME,
        password=PASSWORD,
    )
    app, store = exporter_app_factory(settings)
    client = await aiohttp_client(app)
    await wait_for(lambda: all(s.up for s in store.snapshots.values()))
    pages = [await (await client.get(path)).text() for path in ("/metrics", "/")]
    payload = sim.instance("wa").support_payload(sim.now())["support"]
    phone = payload["debug_info"]
    assert f"WA_DB_PASSWORD={FAKE_DB_PASSWORD}" in payload["env"]  # the trap is armed
    for page in pages:
        for secret in (*SECRETS, FAKE_DB_PASSWORD, phone):
            assert secret not in page


async def test_scrape_is_served_from_memory_while_upstream_hangs(
    aiohttp_client: Any, sim: Simulator, sim_base: str
) -> None:
    sim.add_instance("slow", "single").faults.hang = True
    sim.add_instance("fine", "single")
    settings = make_settings(
        targets=[f"slow={sim_base}/slow", f"fine={sim_base}/fine"], api_key=API_KEY, poll_timeout=5
    )
    app, store = exporter_app_factory(settings)
    client = await aiohttp_client(app)
    await wait_for(lambda: store.snapshots["fine"].up)
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert 'whatsapp_up{target="fine"} 1' in text
    assert 'whatsapp_up{target="slow"} 0' in text
