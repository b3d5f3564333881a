"""The On-Premises simulator answers in the real client's shapes: support, health, shards, meta.

The simulator must behave like the real WhatsApp Business API, or every test built on it lies.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import (
    SIM_KEY,
    SIM_START,
    Client,
    FakeClock,
    assert_error_envelope,
    gateways,
    get_json,
)
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_api_simulator.onprem_documents import UNLIMITED_FREE_SPACE
from whatsapp_api_simulator.onprem_model import Container

# --------------------------------------------------------------------------- shapes


async def test_single_instance_response_is_flat_without_cluster_fields(
    onprem_client: Client,
) -> None:
    doc = await get_json(onprem_client, "/one/v1/support")
    fields = doc["support"]
    assert fields["version"] == "v2.53.2"
    assert fields["multi_connect"] is False
    assert "role" not in fields and "shards" not in fields
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", fields["expire_timestamp"])
    assert fields["free_space_media_incoming"] == UNLIMITED_FREE_SPACE
    assert fields["debug_info"].startswith("+1555010")
    assert fields["socket_conn"] in {"UP", "DN", "SC", "UP receiving offline"}


async def test_first_instance_is_also_served_at_the_root(onprem_client: Client) -> None:
    assert await get_json(onprem_client, "/v1/support") == await get_json(
        onprem_client, "/one/v1/support"
    )


async def test_unknown_instance_is_404_with_envelope(onprem_client: Client) -> None:
    assert_error_envelope(await get_json(onprem_client, "/nope/v1/support", 404), 1006)


async def test_multiconnect_has_one_primary_and_each_shard_owned_once(
    onprem_client: Client,
) -> None:
    support = (await get_json(onprem_client, "/mc/v1/support"))["support"]
    for key in support:
        assert re.fullmatch(r"[\w.-]+:[0-9a-f]{12}", key)
    roles = [c["role"] for c in support.values()]
    assert roles.count("primary_master") == 1
    assert roles.count("secondary_master") == 1
    primary = next(c for c in support.values() if c["role"] == "primary_master")
    assert primary["shards"] == [[-1, -1]]
    owned = [pair for c in support.values() if c["role"] == "coreapp" for pair in c["shards"]]
    assert sorted(owned) == [[0, 0], [1, 1], [2, 2], [3, 3]]
    assert all(c["multi_connect"] is True for c in support.values())


async def test_ha_has_one_coreapp_owning_control_and_normal_shard(onprem_client: Client) -> None:
    support = (await get_json(onprem_client, "/ha/v1/support"))["support"]
    owners = [c for c in support.values() if c["shards"]]
    assert len(owners) == 1
    assert owners[0]["role"] == "coreapp"
    assert owners[0]["shards"] == [[-1, -1], [0, 0]]
    assert [c["role"] for c in support.values()].count("primary_master") == 1
    assert all(c["multi_connect"] is False for c in support.values())


def test_invalid_shard_count_is_refused(onprem_sim: Simulator) -> None:
    with pytest.raises(ValueError, match="shards"):
        onprem_sim.add_instance("bad", "multiconnect", coreapps=3, shards=3)


def test_env_lists_the_deployments_api_key_and_the_variables_planted_in_it() -> None:
    def env(sim: Simulator, name: str, **kw: Any) -> list[str]:
        inst = sim.add_instance(name, **kw)
        return list(inst.support_payload(SIM_START)["support"]["env"])

    planted = Simulator(api_key=SIM_KEY, env={"WA_DB_PASSWORD": "planted"})
    assert {"WA_DB_PASSWORD=planted", f"WA_API_KEY={SIM_KEY}"} <= set(env(planted, "one"))
    own = env(planted, "own", api_key="own-key")
    assert "WA_API_KEY=own-key" in own and f"WA_API_KEY={SIM_KEY}" not in own
    plain = env(Simulator(), "plain")
    assert "WA_DB_HOSTNAME=mysql" in plain
    assert not [v for v in plain if v.startswith(("WA_DB_PASSWORD=", "WA_API_KEY="))]


async def test_container_churn_shows_up_in_the_next_response(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    mc = onprem_sim.instance("mc")
    assert len((await get_json(onprem_client, "/mc/v1/support"))["support"]) == 7
    gone = mc.containers.pop()
    mc.containers.append(Container("mc-coreapp9", "0123456789ab", "coreapp", [[3, 3]]))
    support = (await get_json(onprem_client, "/mc/v1/support"))["support"]
    assert gone.key not in support
    assert support["mc-coreapp9:0123456789ab"]["shards"] == [[3, 3]]


async def test_attributes_change_the_document_within_the_same_second(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    one = onprem_sim.instance("one")
    await get_json(onprem_client, "/one/v1/support")
    one.registered = False
    one.socket_conn = "DN"
    one.version = "v2.51.1"
    one.expires_at = datetime(2025, 10, 23, 12, 0, tzinfo=UTC).timestamp()
    fields = (await get_json(onprem_client, "/one/v1/support"))["support"]
    assert fields["debug_info"] == "unregistered"
    assert fields["socket_conn"] == "DN"
    assert fields["version"] == "v2.51.1"
    assert fields["expire_timestamp"] == "2025-10-23T12:00:00"


def test_values_move_with_the_clock_and_are_deterministic(onprem_clock: FakeClock) -> None:
    def build() -> Simulator:
        s = Simulator(clock=onprem_clock, seed=3)
        s.add_instance("x", "multiconnect", coreapps=2, shards=2)
        return s

    first, second = build(), build()
    doc = first.instance("x").support_payload(onprem_clock.now)
    assert doc == second.instance("x").support_payload(onprem_clock.now)
    later = first.instance("x").support_payload(onprem_clock.now + 600)
    key = next(iter(doc["support"]))
    assert later["support"][key]["free_space_data"] < doc["support"][key]["free_space_data"]
    seen = {
        c["socket_conn"]
        for t in range(0, 900)
        for c in first.instance("x").support_payload(onprem_clock.now + t)["support"].values()
    }
    assert {"UP", "DN", "SC", "UP receiving offline"} <= seen


# --------------------------------------------------------------------------- meta


async def test_every_answer_success_or_error_carries_meta(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    meta = {"api_status": "stable", "version": "v2.53.2"}
    for path in ("/one/v1/support", "/mc/v1/health", "/mc/v1/account/shards"):
        assert (await get_json(onprem_client, path))["meta"] == meta, path
    assert (await get_json(onprem_client, "/one/v1/support", 401, headers={}))["meta"] == meta
    assert (await get_json(onprem_client, "/nope/v1/support", 404))["meta"] == meta
    onprem_sim.instance("ha").faults.status = 500
    assert (await get_json(onprem_client, "/ha/v1/health", 500))["meta"] == meta


async def test_api_status_is_per_instance_and_can_be_deprecated_or_absent(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    onprem_sim.instance("mc").api_status = "deprecated"
    onprem_sim.instance("mc").version = "v2.51.1"
    for path in ("/mc/v1/support", "/mc/v1/health", "/mc/v1/account/shards"):
        doc = await get_json(onprem_client, path)
        assert doc["meta"] == {"api_status": "deprecated", "version": "v2.51.1"}, path
    assert_error_envelope(await get_json(onprem_client, "/one/v1/support", 401, headers={}), 1005)
    onprem_sim.instance("one").api_status = None
    assert "meta" not in await get_json(onprem_client, "/one/v1/support")
    assert "meta" not in await get_json(onprem_client, "/one/v1/support", 401, headers={})


# --------------------------------------------------------------------------- health, shards


async def test_shards_endpoint_reports_the_configured_count(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    assert (await get_json(onprem_client, "/mc/v1/account/shards"))["account"] == {"shards": 4}
    assert (await get_json(onprem_client, "/ha/v1/account/shards"))["account"] == {"shards": 1}
    onprem_sim.instance("mc").shards_as_list = True
    assert (await get_json(onprem_client, "/mc/v1/account/shards"))["account"] == [{"shards": 4}]


async def test_single_health_is_connected_or_follows_registration_and_override(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    assert (await get_json(onprem_client, "/one/v1/health"))["health"] == {
        "gateway_status": "connected"
    }
    one = onprem_sim.instance("one")
    one.registered = False
    assert (await get_json(onprem_client, "/one/v1/health"))["health"][
        "gateway_status"
    ] == "unregistered"
    one.containers[0].gateway_status = "uninitialized"
    assert (await get_json(onprem_client, "/one/v1/health"))["health"][
        "gateway_status"
    ] == "uninitialized"


async def test_ha_health_connects_only_the_owner_of_shard_0(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    health = gateways(await get_json(onprem_client, "/ha/v1/health"))
    ha = onprem_sim.instance("ha")
    assert set(health) == {c.key for c in ha.containers}
    owner = next(c for c in ha.containers if c.shards)
    assert health.pop(owner.key) == ("coreapp", "connected")
    assert {status for _, status in health.values()} == {"disconnected"}
    assert [role for role, _ in health.values()].count("primary_master") == 1


async def test_multiconnect_health_connects_the_primary_and_each_shard_owner(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    health = gateways(await get_json(onprem_client, "/mc/v1/health"))
    connected = sorted(role for role, status in health.values() if status == "connected")
    assert connected == ["coreapp"] * 4 + ["primary_master"]
    spare = next(
        c for c in onprem_sim.instance("mc").containers if c.role == "coreapp" and not c.shards
    )
    assert health[spare.key] == ("coreapp", "disconnected")


async def test_gateway_override_per_container_wins(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    mc = onprem_sim.instance("mc")
    owner = next(c for c in mc.containers if c.owns(2))
    for status in ("connecting", "unregistered", "uninitialized"):
        owner.gateway_status = status
        assert gateways(await get_json(onprem_client, "/mc/v1/health"))[owner.key] == (
            "coreapp",
            status,
        )
