"""The On-Premises simulator's clusters fail over, heal and break the way real ones do."""

from __future__ import annotations

import collections
from typing import Any

import pytest

from tests.conftest import SIM_START, Client, FakeClock, gateways, get_json
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_api_simulator.onprem_model import OLD_VERSION, Instance

# --------------------------------------------------------------------------- failovers


def support_of(inst: Instance) -> dict[str, Any]:
    support: dict[str, Any] = inst.support_payload(SIM_START)["support"]
    return support


def picture(inst: Instance) -> tuple[list[str], dict[int, list[str]]]:
    """(keys of primary masters, {shard id: keys of its owners}) as /v1/support shows them."""
    primaries, owners = [], collections.defaultdict(list)
    for key, c in support_of(inst).items():
        if c["role"] == "primary_master":
            primaries.append(key)
        for first, last in c["shards"]:
            for shard in range(first, last + 1):
                owners[shard].append(key)
    return primaries, dict(owners)


def test_master_failover_moves_the_primary_role_and_the_control_shard(
    onprem_sim: Simulator,
) -> None:
    mc = onprem_sim.add_instance("mc", "multiconnect", masters=3, coreapps=4, shards=4)
    old = next(c for c in mc.containers if c.role == "primary_master")
    new = mc.fail_over_master()
    assert new is not old and new.role == "primary_master"
    primaries, owners = picture(mc)
    assert primaries == [new.key]
    assert owners[-1] == [new.key]
    assert support_of(mc)[old.key]["role"] == "secondary_master"
    assert support_of(mc)[old.key]["shards"] == []
    health = mc.health_payload()["health"]
    assert health[new.key]["gateway_status"] == "connected"
    assert health[old.key]["gateway_status"] == "disconnected"
    assert mc.fail_over_master(to=old.key) is old


def test_master_failover_needs_a_secondary_and_a_cluster(onprem_sim: Simulator) -> None:
    lonely = onprem_sim.add_instance("lonely", "ha", masters=1, coreapps=2)
    with pytest.raises(ValueError, match="secondary"):
        lonely.fail_over_master()
    with pytest.raises(ValueError, match="single"):
        onprem_sim.add_instance("one").fail_over_master()


def test_killed_coreapp_vanishes_and_its_shard_moves_to_the_spare(onprem_sim: Simulator) -> None:
    mc = onprem_sim.add_instance("mc", "multiconnect", masters=2, coreapps=5, shards=4)
    victim = next(c for c in mc.containers if c.owns(2))
    spare = next(c for c in mc.containers if c.role == "coreapp" and not c.shards)
    assert mc.kill_coreapp(victim.key) is spare
    assert victim.key not in support_of(mc)
    assert victim.key not in mc.health_payload()["health"]
    _, owners = picture(mc)
    assert owners[2] == [spare.key]
    assert mc.health_payload()["health"][spare.key]["gateway_status"] == "connected"
    # No spare left: the next dead owner's shard stays unowned.
    assert mc.kill_coreapp(next(c for c in mc.containers if c.owns(0))) is None
    _, owners = picture(mc)
    assert 0 not in owners and sorted(owners) == [-1, 1, 2, 3]


def test_killed_ha_owner_hands_both_shards_over_and_respawn_brings_a_spare(
    onprem_sim: Simulator,
) -> None:
    ha = onprem_sim.add_instance("ha", "ha", masters=2, coreapps=2)
    victim = next(c for c in ha.containers if c.shards)
    heir = ha.kill_coreapp(respawn=True)
    assert heir is not None and heir.shards == [[-1, -1], [0, 0]]
    reborn = ha.containers[-1]
    assert reborn.hostname == victim.hostname and reborn.container_id != victim.container_id
    assert reborn.role == "coreapp" and reborn.shards == []
    assert len(support_of(ha)) == 4
    with pytest.raises(ValueError, match="not a Coreapp"):
        ha.kill_coreapp(ha.containers[0])


def test_scheduled_failovers_follow_the_clock_deterministically(onprem_clock: FakeClock) -> None:
    def build() -> Instance:
        s = Simulator(clock=onprem_clock, seed=5)
        inst = s.add_instance("mc", "multiconnect", masters=2, coreapps=5, shards=4)
        inst.schedule_failovers(60)
        return inst

    first, second = build(), build()
    before = picture(first)
    first.tick(SIM_START + 59)
    assert picture(first) == before
    first.tick(SIM_START + 60)
    assert picture(first)[0] != before[0]  # the lease moved
    keys = set(support_of(first))
    first.tick(SIM_START + 120)
    assert set(support_of(first)) != keys  # a Coreapp was replaced
    second.tick(SIM_START + 120)  # the same seed and clock give the same cluster
    assert support_of(second) == support_of(first)
    for t in range(180, 6000, 60):
        first.tick(SIM_START + t)
        primaries, owners = picture(first)
        assert len(primaries) == 1
        assert {shard: len(keys) for shard, keys in owners.items()} == dict.fromkeys(
            range(-1, 4), 1
        )


def test_a_respawned_coreapp_takes_the_shard_its_dead_predecessor_left_unowned(
    onprem_sim: Simulator,
) -> None:
    """No spare: the shard is unowned until the container comes back, then the primary master
    hands it over, as a real cluster heals."""
    mc = onprem_sim.add_instance("mc", "multiconnect", masters=2, coreapps=4, shards=4)
    victim = next(c for c in mc.containers if c.owns(1))
    heir = mc.kill_coreapp(victim, respawn=True)
    assert heir is not None and heir.hostname == victim.hostname
    assert heir.container_id != victim.container_id and heir.shards == [[1, 1]]
    primaries, owners = picture(mc)
    assert len(primaries) == 1 and owners == {s: owners[s] for s in range(-1, 4)}
    assert all(len(keys) == 1 for keys in owners.values())
    assert mc.health_payload()["health"][heir.key]["gateway_status"] == "connected"


def test_reassigning_orphans_needs_a_primary_master_and_a_spare(onprem_sim: Simulator) -> None:
    mc = onprem_sim.add_instance("mc", "multiconnect", masters=2, coreapps=4, shards=4)
    mc.kill_coreapp(next(c for c in mc.containers if c.owns(3)))
    assert mc.reassign_orphans() == []  # no spare: shard 3 stays unowned
    assert 3 not in picture(mc)[1]
    spare = mc.add_container("coreapp")
    for c in mc.containers:
        if c.role == "primary_master":
            c.role = "secondary_master"
            c.shards = []
    assert mc.reassign_orphans() == []  # nobody to reassign anything
    mc.fail_over_master()
    assert mc.reassign_orphans() == [spare] and spare.shards == [[3, 3]]
    ha = onprem_sim.add_instance("ha", "ha", masters=2, coreapps=1)
    ha.kill_coreapp()
    spare = ha.add_container("coreapp")
    assert ha.reassign_orphans() == [spare] and spare.shards == [[-1, -1], [0, 0]]


def test_the_demos_cluster_left_running_for_hours_heals_every_failover(
    onprem_clock: FakeClock,
) -> None:
    """The demo's cluster: 2 masters, 4 Coreapps for 4 shards (no spare), a failover every
    5 minutes. Polled every 30 s for 8 hours, each shard always has one owner, connected, and
    there is one primary master: no cluster alert has anything to fire on."""
    sim = Simulator(clock=onprem_clock, seed=0)
    cluster = sim.add_instance("cluster", "multiconnect", masters=2, coreapps=4, shards=4)
    cluster.schedule_failovers(300)
    primaries_seen: set[str] = set()
    containers_seen: set[str] = set()
    for step in range(8 * 3600 // 30):
        onprem_clock.now = SIM_START + 30 * step
        cluster.tick(onprem_clock.now)
        primaries, owners = picture(cluster)
        health = cluster.health_payload()["health"]
        assert len(primaries) == 1, onprem_clock.now - SIM_START
        assert {s: len(keys) for s, keys in owners.items()} == dict.fromkeys(range(-1, 4), 1), (
            onprem_clock.now - SIM_START
        )
        assert all(health[k]["gateway_status"] == "connected" for ks in owners.values() for k in ks)
        primaries_seen.update(primaries)
        containers_seen.update(support_of(cluster))
    # The failovers did happen: the lease moved and Coreapps were replaced, dozens of times.
    assert len(primaries_seen) == 2
    assert len(containers_seen) > 6 + 40


async def test_scheduled_failovers_happen_while_the_server_is_asked(
    onprem_client: Client, onprem_sim: Simulator, onprem_clock: FakeClock
) -> None:
    onprem_sim.instance("ha").schedule_failovers(30)
    health = gateways(await get_json(onprem_client, "/ha/v1/health"))
    onprem_clock.now += 30
    assert gateways(await get_json(onprem_client, "/ha/v1/health")) != health


# --------------------------------------------------------------------------- broken pictures


def test_broken_pictures_show_in_support_and_health(onprem_sim: Simulator) -> None:
    mc = onprem_sim.add_instance("mc", "multiconnect", masters=2, coreapps=4, shards=4)
    mc.break_cluster("unowned_shard")
    assert 3 not in picture(mc)[1]
    second = mc.break_cluster("two_primaries")
    assert len(picture(mc)[0]) == 2 and second.key in picture(mc)[0]
    odd = mc.break_cluster("mixed_builds")
    versions = {c["version"] for c in support_of(mc).values()}
    assert versions == {"v2.53.2", OLD_VERSION}
    assert OLD_VERSION in support_of(mc)[odd.key]["description"]
    dark = mc.break_cluster("owner_disconnected")
    assert dark.shards and mc.health_payload()["health"][dark.key]["gateway_status"] == (
        "disconnected"
    )
    with pytest.raises(ValueError, match="kind"):
        mc.break_cluster("on_fire")


async def test_container_build_change_reaches_a_cached_body_within_the_second(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    await get_json(onprem_client, "/mc/v1/support")
    container = onprem_sim.instance("mc").containers[2]
    container.version = "v2.49.3"
    support = (await get_json(onprem_client, "/mc/v1/support"))["support"]
    assert support[container.key]["version"] == "v2.49.3"
