"""The simulator must behave like the real WhatsApp Business API, or every test built on it lies."""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientTimeout, web
from aiohttp.test_utils import TestClient

from whatsapp_api_simulator.onprem import (
    BROKEN_PICTURES,
    ENDPOINTS,
    OLD_VERSION,
    UNLIMITED_FREE_SPACE,
    Container,
    Faults,
    Instance,
    Simulator,
    build_parser,
    main,
)

START = 1_750_000_000.0
KEY = "test-api-key-0123456789"
APIKEY = {"Authorization": f"Apikey {KEY}"}

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


class FakeClock:
    """A clock the test moves by hand, so nothing ever sleeps for real."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(api_key=KEY, password="s3cret-pass", clock=clock, seed=7)


@pytest.fixture
async def client(aiohttp_client: Any, sim: Simulator) -> Client:
    sim.add_instance("one")
    sim.add_instance("mc", "multiconnect", masters=2, coreapps=5, shards=4)
    sim.add_instance("ha", "ha", masters=3, coreapps=3)
    c: Client = await aiohttp_client(sim.app())
    return c


async def get_json(client: Client, path: str, status: int = 200, **kw: Any) -> Any:
    kw.setdefault("headers", APIKEY)
    resp = await client.get(path, **kw)
    assert resp.status == status, await resp.text()
    return orjson.loads(await resp.read())


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def assert_error_envelope(doc: Any, code: int) -> None:
    assert doc["errors"][0]["code"] == code
    assert doc["errors"][0]["title"]
    assert doc["meta"]["api_status"] == "stable"


# --------------------------------------------------------------------------- shapes


async def test_single_instance_response_is_flat_without_cluster_fields(client: Client) -> None:
    doc = await get_json(client, "/one/v1/support")
    fields = doc["support"]
    assert fields["version"] == "v2.53.2"
    assert fields["multi_connect"] is False
    assert "role" not in fields and "shards" not in fields
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", fields["expire_timestamp"])
    assert fields["free_space_media_incoming"] == UNLIMITED_FREE_SPACE
    assert fields["debug_info"].startswith("+1555010")
    assert fields["socket_conn"] in {"UP", "DN", "SC", "UP receiving offline"}


async def test_first_instance_is_also_served_at_the_root(client: Client) -> None:
    assert await get_json(client, "/v1/support") == await get_json(client, "/one/v1/support")


async def test_unknown_instance_is_404_with_envelope(client: Client) -> None:
    assert_error_envelope(await get_json(client, "/nope/v1/support", 404), 1006)


async def test_multiconnect_has_one_primary_and_each_shard_owned_once(client: Client) -> None:
    support = (await get_json(client, "/mc/v1/support"))["support"]
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


async def test_ha_has_one_coreapp_owning_control_and_normal_shard(client: Client) -> None:
    support = (await get_json(client, "/ha/v1/support"))["support"]
    owners = [c for c in support.values() if c["shards"]]
    assert len(owners) == 1
    assert owners[0]["role"] == "coreapp"
    assert owners[0]["shards"] == [[-1, -1], [0, 0]]
    assert [c["role"] for c in support.values()].count("primary_master") == 1
    assert all(c["multi_connect"] is False for c in support.values())


def test_invalid_shard_count_is_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="shards"):
        sim.add_instance("bad", "multiconnect", coreapps=3, shards=3)


def test_env_lists_the_deployments_api_key_and_the_variables_planted_in_it() -> None:
    def env(sim: Simulator, name: str, **kw: Any) -> list[str]:
        inst = sim.add_instance(name, **kw)
        return list(inst.support_payload(START)["support"]["env"])

    planted = Simulator(api_key=KEY, env={"WA_DB_PASSWORD": "planted"})
    assert {"WA_DB_PASSWORD=planted", f"WA_API_KEY={KEY}"} <= set(env(planted, "one"))
    own = env(planted, "own", api_key="own-key")
    assert "WA_API_KEY=own-key" in own and f"WA_API_KEY={KEY}" not in own
    plain = env(Simulator(), "plain")
    assert "WA_DB_HOSTNAME=mysql" in plain
    assert not [v for v in plain if v.startswith(("WA_DB_PASSWORD=", "WA_API_KEY="))]


async def test_container_churn_shows_up_in_the_next_response(
    client: Client, sim: Simulator
) -> None:
    mc = sim.instance("mc")
    assert len((await get_json(client, "/mc/v1/support"))["support"]) == 7
    gone = mc.containers.pop()
    mc.containers.append(Container("mc-coreapp9", "0123456789ab", "coreapp", [[3, 3]]))
    support = (await get_json(client, "/mc/v1/support"))["support"]
    assert gone.key not in support
    assert support["mc-coreapp9:0123456789ab"]["shards"] == [[3, 3]]


async def test_attributes_change_the_document_within_the_same_second(
    client: Client, sim: Simulator
) -> None:
    one = sim.instance("one")
    await get_json(client, "/one/v1/support")
    one.registered = False
    one.socket_conn = "DN"
    one.version = "v2.51.1"
    one.expires_at = datetime(2025, 10, 23, 12, 0, tzinfo=UTC).timestamp()
    fields = (await get_json(client, "/one/v1/support"))["support"]
    assert fields["debug_info"] == "unregistered"
    assert fields["socket_conn"] == "DN"
    assert fields["version"] == "v2.51.1"
    assert fields["expire_timestamp"] == "2025-10-23T12:00:00"


def test_values_move_with_the_clock_and_are_deterministic(clock: FakeClock) -> None:
    def build() -> Simulator:
        s = Simulator(clock=clock, seed=3)
        s.add_instance("x", "multiconnect", coreapps=2, shards=2)
        return s

    first, second = build(), build()
    doc = first.instance("x").support_payload(clock.now)
    assert doc == second.instance("x").support_payload(clock.now)
    later = first.instance("x").support_payload(clock.now + 600)
    key = next(iter(doc["support"]))
    assert later["support"][key]["free_space_data"] < doc["support"][key]["free_space_data"]
    seen = {
        c["socket_conn"]
        for t in range(0, 900)
        for c in first.instance("x").support_payload(clock.now + t)["support"].values()
    }
    assert {"UP", "DN", "SC", "UP receiving offline"} <= seen


# --------------------------------------------------------------------------- auth


async def test_api_key_is_accepted(client: Client) -> None:
    assert "support" in await get_json(client, "/one/v1/support")


async def test_wrong_api_key_is_rejected_with_401_envelope(client: Client) -> None:
    doc = await get_json(
        client, "/one/v1/support", 401, headers={"Authorization": "Apikey wrong-key-123456"}
    )
    assert_error_envelope(doc, 1005)
    assert_error_envelope(await get_json(client, "/one/v1/support", 401, headers={}), 1005)


async def test_login_token_has_documented_format_and_works(
    client: Client, sim: Simulator, clock: FakeClock
) -> None:
    resp = await client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    assert resp.status == 200
    doc = await resp.json()
    user = doc["users"][0]
    assert re.fullmatch(r"[A-Za-z0-9_-]{20,}", user["token"])
    assert user["expires_after"] == datetime.fromtimestamp(START + 7 * 86400, UTC).strftime(
        "%Y-%m-%d %H:%M:%S+00:00"
    )
    assert doc["meta"] == {"api_status": "stable", "version": "v2.53.2"}
    assert sim.tokens_issued == 1
    bearer = {"Authorization": f"Bearer {user['token']}"}
    assert "support" in await get_json(client, "/mc/v1/support", headers=bearer)


async def test_expired_token_is_rejected_with_401(client: Client, clock: FakeClock) -> None:
    resp = await client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    bearer = {"Authorization": f"Bearer {(await resp.json())['users'][0]['token']}"}
    clock.now += 7 * 86400 - 1
    await get_json(client, "/one/v1/support", headers=bearer)
    clock.now += 1
    assert_error_envelope(await get_json(client, "/one/v1/support", 401, headers=bearer), 1005)


async def test_wrong_password_login_is_rejected(client: Client, sim: Simulator) -> None:
    resp = await client.post("/one/v1/users/login", headers=basic("admin", "nope"))
    assert resp.status == 401
    assert_error_envelope(await resp.json(), 1005)
    assert sim.tokens_issued == 0


async def test_login_is_disabled_without_password(aiohttp_client: Any) -> None:
    sim = Simulator(api_key=KEY)
    sim.add_instance("one")
    client = await aiohttp_client(sim.app())
    resp = await client.post("/v1/users/login", headers=basic("admin", ""))
    assert resp.status == 401


# --------------------------------------------------------------------------- rate limit


async def test_rate_limit_rejects_beyond_burst_then_refills(
    client: Client, sim: Simulator, clock: FakeClock
) -> None:
    for _ in range(60):
        await get_json(client, "/one/v1/support")
    assert_error_envelope(await get_json(client, "/one/v1/support", 429), 1015)
    assert sim.instance("one").requests["rejected"] == 1
    assert sim.instance("one").requests["support"] == 61
    await get_json(client, "/mc/v1/support")  # other instances have their own bucket
    clock.now += 1
    for _ in range(20):
        await get_json(client, "/one/v1/support")
    await get_json(client, "/one/v1/support", 429)


# --------------------------------------------------------------------------- faults


async def test_latency_fault_delays_but_answers(client: Client, sim: Simulator) -> None:
    sim.instance("one").faults.latency = 0.01
    assert "support" in await get_json(client, "/one/v1/support")


async def test_hang_fault_never_answers(client: Client, sim: Simulator) -> None:
    sim.instance("one").faults.hang = True
    with pytest.raises(TimeoutError):
        await client.get("/one/v1/support", headers=APIKEY, timeout=ClientTimeout(total=0.2))


async def test_status_fault_503_with_retry_after(client: Client, sim: Simulator) -> None:
    sim.instance("one").faults.status = 503
    sim.instance("one").faults.retry_after = "5"
    resp = await client.get("/one/v1/support")  # faults come before auth
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert_error_envelope(await resp.json(), 1011)
    login = await client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    assert login.status == 503


async def test_status_fault_other_than_503_is_internal_error(
    client: Client, sim: Simulator
) -> None:
    sim.instance("one").faults.status = 500
    assert_error_envelope(await get_json(client, "/one/v1/support", 500), 1014)


async def test_malformed_body_fault_is_sent_verbatim(client: Client, sim: Simulator) -> None:
    sim.instance("one").faults.body = b'{"support": {'
    resp = await client.get("/one/v1/support", headers=APIKEY)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.read() == b'{"support": {'


async def test_body_size_fault_streams_exactly_that_many_bytes(
    client: Client, sim: Simulator
) -> None:
    size = 3 * 64 * 1024 + 17
    sim.instance("one").faults.body_size = size
    resp = await client.get("/one/v1/support", headers=APIKEY)
    assert resp.status == 200
    assert resp.content_length == size
    total = 0
    first = b""
    async for chunk in resp.content.iter_chunked(65536):
        first = first or chunk
        total += len(chunk)
    assert total == size
    assert first.startswith(b'{"support"')


async def test_payload_override_is_returned_exactly(client: Client, sim: Simulator) -> None:
    sim.instance("one").payload = {"version": "v9.9.9", "socket_conn": "UNK"}
    doc = await get_json(client, "/one/v1/support")
    assert doc["support"] == {"version": "v9.9.9", "socket_conn": "UNK"}


async def test_reject_api_key_fault_requires_a_bearer_token_on_support(
    client: Client, sim: Simulator
) -> None:
    sim.instance("one").faults.reject_api_key = True
    assert_error_envelope(await get_json(client, "/one/v1/support", 401), 1005)
    await get_json(client, "/one/v1/health")  # health still takes the key
    resp = await client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    bearer = {"Authorization": f"Bearer {(await resp.json())['users'][0]['token']}"}
    assert "support" in await get_json(client, "/one/v1/support", headers=bearer)


# --------------------------------------------------------------------------- command line


def test_main_rejects_bad_arguments_with_exit_code_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--listen", "nonsense"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--multiconnect", "1", "--shards", "3", "--coreapps", "4"])
    assert exc.value.code == 2


def test_default_listen_address_is_loopback_port_10043_not_prometheus_9090() -> None:
    assert build_parser().parse_args([]).listen == ("127.0.0.1", 10043)


def test_taken_port_prints_one_line_naming_the_address_and_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "whatsapp_api_simulator", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert proc.stdout == ""  # no target line for a server that does not exist
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in proc.stderr


def test_module_prints_targets_with_the_bound_port_serves_them_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "whatsapp_api_simulator",
            "--listen",
            "127.0.0.1:0",
            "--single",
            "2",
            "--multiconnect",
            "1",
            "--shards",
            "2",
            "--ha",
            "1",
            "--api-key",
            KEY,
            "--failover-every",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        targets = dict(part.split("=", 1) for part in line.split(","))
        assert list(targets) == ["single-0", "single-1", "ha-0", "mc-0"]
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/single-0", targets["single-0"])
        assert match and int(match.group(1)) > 0

        def primary() -> str:
            request = urllib.request.Request(f"{targets['ha-0']}/v1/support", headers=APIKEY)
            with urllib.request.urlopen(request, timeout=5) as resp:
                support: dict[str, dict[str, Any]] = orjson.loads(resp.read())["support"]
            return next(k for k, c in support.items() if c["role"] == "primary_master")

        first = primary()
        deadline = time.monotonic() + 5
        while primary() == first:  # --failover-every moves the lease on the real clock
            assert time.monotonic() < deadline, "no failover happened"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- meta


async def test_every_answer_success_or_error_carries_meta(client: Client, sim: Simulator) -> None:
    meta = {"api_status": "stable", "version": "v2.53.2"}
    for path in ("/one/v1/support", "/mc/v1/health", "/mc/v1/account/shards"):
        assert (await get_json(client, path))["meta"] == meta, path
    assert (await get_json(client, "/one/v1/support", 401, headers={}))["meta"] == meta
    assert (await get_json(client, "/nope/v1/support", 404))["meta"] == meta
    sim.instance("ha").faults.status = 500
    assert (await get_json(client, "/ha/v1/health", 500))["meta"] == meta


async def test_api_status_is_per_instance_and_can_be_deprecated_or_absent(
    client: Client, sim: Simulator
) -> None:
    sim.instance("mc").api_status = "deprecated"
    sim.instance("mc").version = "v2.51.1"
    for path in ("/mc/v1/support", "/mc/v1/health", "/mc/v1/account/shards"):
        doc = await get_json(client, path)
        assert doc["meta"] == {"api_status": "deprecated", "version": "v2.51.1"}, path
    assert_error_envelope(await get_json(client, "/one/v1/support", 401, headers={}), 1005)
    sim.instance("one").api_status = None
    assert "meta" not in await get_json(client, "/one/v1/support")
    assert "meta" not in await get_json(client, "/one/v1/support", 401, headers={})


# --------------------------------------------------------------------------- health, shards


async def test_shards_endpoint_reports_the_configured_count(client: Client, sim: Simulator) -> None:
    assert (await get_json(client, "/mc/v1/account/shards"))["account"] == {"shards": 4}
    assert (await get_json(client, "/ha/v1/account/shards"))["account"] == {"shards": 1}
    sim.instance("mc").shards_as_list = True
    assert (await get_json(client, "/mc/v1/account/shards"))["account"] == [{"shards": 4}]


def gateways(doc: Any) -> dict[str, tuple[str, str]]:
    """{key: (role, gateway_status)} of a keyed health answer."""
    return {k: (v["role"], v["gateway_status"]) for k, v in doc["health"].items()}


async def test_single_health_is_connected_or_follows_registration_and_override(
    client: Client, sim: Simulator
) -> None:
    assert (await get_json(client, "/one/v1/health"))["health"] == {"gateway_status": "connected"}
    one = sim.instance("one")
    one.registered = False
    assert (await get_json(client, "/one/v1/health"))["health"]["gateway_status"] == "unregistered"
    one.containers[0].gateway_status = "uninitialized"
    assert (await get_json(client, "/one/v1/health"))["health"]["gateway_status"] == "uninitialized"


async def test_ha_health_connects_only_the_owner_of_shard_0(client: Client, sim: Simulator) -> None:
    health = gateways(await get_json(client, "/ha/v1/health"))
    ha = sim.instance("ha")
    assert set(health) == {c.key for c in ha.containers}
    owner = next(c for c in ha.containers if c.shards)
    assert health.pop(owner.key) == ("coreapp", "connected")
    assert {status for _, status in health.values()} == {"disconnected"}
    assert [role for role, _ in health.values()].count("primary_master") == 1


async def test_multiconnect_health_connects_the_primary_and_each_shard_owner(
    client: Client, sim: Simulator
) -> None:
    health = gateways(await get_json(client, "/mc/v1/health"))
    connected = sorted(role for role, status in health.values() if status == "connected")
    assert connected == ["coreapp"] * 4 + ["primary_master"]
    spare = next(c for c in sim.instance("mc").containers if c.role == "coreapp" and not c.shards)
    assert health[spare.key] == ("coreapp", "disconnected")


async def test_gateway_override_per_container_wins(client: Client, sim: Simulator) -> None:
    mc = sim.instance("mc")
    owner = next(c for c in mc.containers if c.owns(2))
    for status in ("connecting", "unregistered", "uninitialized"):
        owner.gateway_status = status
        assert gateways(await get_json(client, "/mc/v1/health"))[owner.key] == ("coreapp", status)


# --------------------------------------------------------------------------- failovers


def support_of(inst: Instance) -> dict[str, Any]:
    support: dict[str, Any] = inst.support_payload(START)["support"]
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


def test_master_failover_moves_the_primary_role_and_the_control_shard(sim: Simulator) -> None:
    mc = sim.add_instance("mc", "multiconnect", masters=3, coreapps=4, shards=4)
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


def test_master_failover_needs_a_secondary_and_a_cluster(sim: Simulator) -> None:
    lonely = sim.add_instance("lonely", "ha", masters=1, coreapps=2)
    with pytest.raises(ValueError, match="secondary"):
        lonely.fail_over_master()
    with pytest.raises(ValueError, match="single"):
        sim.add_instance("one").fail_over_master()


def test_killed_coreapp_vanishes_and_its_shard_moves_to_the_spare(sim: Simulator) -> None:
    mc = sim.add_instance("mc", "multiconnect", masters=2, coreapps=5, shards=4)
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
    sim: Simulator,
) -> None:
    ha = sim.add_instance("ha", "ha", masters=2, coreapps=2)
    victim = next(c for c in ha.containers if c.shards)
    heir = ha.kill_coreapp(respawn=True)
    assert heir is not None and heir.shards == [[-1, -1], [0, 0]]
    reborn = ha.containers[-1]
    assert reborn.hostname == victim.hostname and reborn.container_id != victim.container_id
    assert reborn.role == "coreapp" and reborn.shards == []
    assert len(support_of(ha)) == 4
    with pytest.raises(ValueError, match="not a Coreapp"):
        ha.kill_coreapp(ha.containers[0])


def test_scheduled_failovers_follow_the_clock_deterministically(clock: FakeClock) -> None:
    def build() -> Instance:
        s = Simulator(clock=clock, seed=5)
        inst = s.add_instance("mc", "multiconnect", masters=2, coreapps=5, shards=4)
        inst.schedule_failovers(60)
        return inst

    first, second = build(), build()
    before = picture(first)
    first.tick(START + 59)
    assert picture(first) == before
    first.tick(START + 60)
    assert picture(first)[0] != before[0]  # the lease moved
    keys = set(support_of(first))
    first.tick(START + 120)
    assert set(support_of(first)) != keys  # a Coreapp was replaced
    second.tick(START + 120)  # the same seed and clock give the same cluster
    assert support_of(second) == support_of(first)
    for t in range(180, 6000, 60):
        first.tick(START + t)
        primaries, owners = picture(first)
        assert len(primaries) == 1
        assert {shard: len(keys) for shard, keys in owners.items()} == dict.fromkeys(
            range(-1, 4), 1
        )


def test_a_respawned_coreapp_takes_the_shard_its_dead_predecessor_left_unowned(
    sim: Simulator,
) -> None:
    """No spare: the shard is unowned until the container comes back, then the primary master
    hands it over, as a real cluster heals."""
    mc = sim.add_instance("mc", "multiconnect", masters=2, coreapps=4, shards=4)
    victim = next(c for c in mc.containers if c.owns(1))
    heir = mc.kill_coreapp(victim, respawn=True)
    assert heir is not None and heir.hostname == victim.hostname
    assert heir.container_id != victim.container_id and heir.shards == [[1, 1]]
    primaries, owners = picture(mc)
    assert len(primaries) == 1 and owners == {s: owners[s] for s in range(-1, 4)}
    assert all(len(keys) == 1 for keys in owners.values())
    assert mc.health_payload()["health"][heir.key]["gateway_status"] == "connected"


def test_reassigning_orphans_needs_a_primary_master_and_a_spare(sim: Simulator) -> None:
    mc = sim.add_instance("mc", "multiconnect", masters=2, coreapps=4, shards=4)
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
    ha = sim.add_instance("ha", "ha", masters=2, coreapps=1)
    ha.kill_coreapp()
    spare = ha.add_container("coreapp")
    assert ha.reassign_orphans() == [spare] and spare.shards == [[-1, -1], [0, 0]]


def test_the_demos_cluster_left_running_for_hours_heals_every_failover(clock: FakeClock) -> None:
    """The demo's cluster: 2 masters, 4 Coreapps for 4 shards (no spare), a failover every
    5 minutes. Polled every 30 s for 8 hours, each shard always has one owner, connected, and
    there is one primary master: no cluster alert has anything to fire on."""
    sim = Simulator(clock=clock, seed=0)
    cluster = sim.add_instance("cluster", "multiconnect", masters=2, coreapps=4, shards=4)
    cluster.schedule_failovers(300)
    primaries_seen: set[str] = set()
    containers_seen: set[str] = set()
    for step in range(8 * 3600 // 30):
        clock.now = START + 30 * step
        cluster.tick(clock.now)
        primaries, owners = picture(cluster)
        health = cluster.health_payload()["health"]
        assert len(primaries) == 1, clock.now - START
        assert {s: len(keys) for s, keys in owners.items()} == dict.fromkeys(range(-1, 4), 1), (
            clock.now - START
        )
        assert all(health[k]["gateway_status"] == "connected" for ks in owners.values() for k in ks)
        primaries_seen.update(primaries)
        containers_seen.update(support_of(cluster))
    # The failovers did happen: the lease moved and Coreapps were replaced, dozens of times.
    assert len(primaries_seen) == 2
    assert len(containers_seen) > 6 + 40


async def test_scheduled_failovers_happen_while_the_server_is_asked(
    client: Client, sim: Simulator, clock: FakeClock
) -> None:
    sim.instance("ha").schedule_failovers(30)
    health = gateways(await get_json(client, "/ha/v1/health"))
    clock.now += 30
    assert gateways(await get_json(client, "/ha/v1/health")) != health


# --------------------------------------------------------------------------- broken pictures


def test_broken_pictures_show_in_support_and_health(sim: Simulator) -> None:
    mc = sim.add_instance("mc", "multiconnect", masters=2, coreapps=4, shards=4)
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
    client: Client, sim: Simulator
) -> None:
    await get_json(client, "/mc/v1/support")
    container = sim.instance("mc").containers[2]
    container.version = "v2.49.3"
    support = (await get_json(client, "/mc/v1/support"))["support"]
    assert support[container.key]["version"] == "v2.49.3"


# --------------------------------------------------------------------------- endpoint faults


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        pytest.param({"status": 500}, 500, id="500"),
        pytest.param({"missing": True}, 404, id="404-older-build"),
        pytest.param({"body": b'{"health": '}, 200, id="invalid-json"),
    ],
)
async def test_optional_endpoint_faults_leave_support_alone(
    client: Client, sim: Simulator, fault: dict[str, Any], status: int
) -> None:
    mc = sim.instance("mc")
    for endpoint in ("health", "shards"):
        for key, value in fault.items():
            setattr(mc.faults_for(endpoint), key, value)
    path = {"health": "/mc/v1/health", "shards": "/mc/v1/account/shards"}
    for endpoint, url in path.items():
        resp = await client.get(url, headers=APIKEY)
        assert resp.status == status, endpoint
        body = await resp.read()
        if status == 404:
            assert_error_envelope(orjson.loads(body), 1006)
        if "body" in fault:
            assert body == fault["body"]
    assert "support" in await get_json(client, "/mc/v1/support")


async def test_hang_on_health_only(client: Client, sim: Simulator) -> None:
    sim.instance("one").faults_for("health").hang = True
    with pytest.raises(TimeoutError):
        await client.get("/one/v1/health", headers=APIKEY, timeout=ClientTimeout(total=0.2))
    assert "support" in await get_json(client, "/one/v1/support")


def test_faults_for_an_unknown_endpoint_is_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        sim.add_instance("one").faults_for("metrics")


async def test_requests_are_counted_per_endpoint_per_instance(
    client: Client, sim: Simulator
) -> None:
    for _ in range(3):
        await get_json(client, "/mc/v1/support")
    await get_json(client, "/mc/v1/health")
    await get_json(client, "/one/v1/account/shards")
    await client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    assert sim.instance("mc").requests == {"support": 3, "health": 1}
    assert sim.instance("one").requests == {"shards": 1, "login": 1}
    assert sim.instance("ha").requests == {}


# --------------------------------------------------------------------------- credentials


async def test_instances_with_their_own_credentials_accept_only_those(
    aiohttp_client: Any, clock: FakeClock
) -> None:
    sim = Simulator(api_key=KEY, password="global-pass", clock=clock)
    sim.add_instance("default")
    own = sim.add_instance(
        "own", api_key="own-api-key-abcdef012", username="ops", password="own-pass"
    )
    client: Client = await aiohttp_client(sim.app())
    own_key = {"Authorization": "Apikey own-api-key-abcdef012"}
    await get_json(client, "/own/v1/support", headers=own_key)
    await get_json(client, "/own/v1/support", 401)  # the global key is not this one's
    await get_json(client, "/default/v1/support")
    await get_json(client, "/default/v1/support", 401, headers=own_key)
    assert (
        f"WA_API_KEY={own.api_key}"
        in (await get_json(client, "/own/v1/support", headers=own_key))["support"]["env"]
    )

    async def login(path: str, user: str, password: str) -> dict[str, str]:
        resp = await client.post(path, headers=basic(user, password))
        assert resp.status == 200, await resp.text()
        return {"Authorization": f"Bearer {(await resp.json())['users'][0]['token']}"}

    assert (
        await client.post("/own/v1/users/login", headers=basic("admin", "global-pass"))
    ).status == 401
    own_token = await login("/own/v1/users/login", "ops", "own-pass")
    global_token = await login("/default/v1/users/login", "admin", "global-pass")
    await get_json(client, "/own/v1/support", headers=own_token)
    await get_json(client, "/default/v1/support", 401, headers=own_token)
    await get_json(client, "/own/v1/support", 401, headers=global_token)


@pytest.mark.parametrize("value", ["²", "-5", "99999999", "Wed, 21 Oct 2026 07:28:00 GMT"])
async def test_retry_after_is_sent_verbatim(client: Client, sim: Simulator, value: str) -> None:
    sim.instance("one").faults.status = 429
    sim.instance("one").faults.retry_after = value
    resp = await client.get("/one/v1/support", headers=APIKEY)
    assert resp.status == 429
    assert dict(resp.raw_headers)[b"Retry-After"] == value.encode()


async def test_login_hands_out_a_token_with_cr_lf_verbatim(client: Client, sim: Simulator) -> None:
    sim.instance("one").faults_for("login").login_token = "tok\r\nX-Injected: yes"
    resp = await client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    assert (await resp.json())["users"][0]["token"] == "tok\r\nX-Injected: yes"
    assert "X-Injected" not in resp.headers


async def test_set_cookie_on_every_answer_and_cookies_sent_back_are_counted(
    client: Client, sim: Simulator
) -> None:
    one = sim.instance("one")
    one.faults.set_cookie = True
    seen = set()
    for path, headers, status in [
        ("/one/v1/support", APIKEY, 200),
        ("/one/v1/health", {}, 401),
        ("/one/v1/account/shards", APIKEY, 200),
    ]:
        resp = await client.get(path, headers=headers)
        assert resp.status == status
        seen.add(resp.headers["Set-Cookie"])
    assert len(seen) == 3
    assert one.cookies_received == 2  # the test client's cookie jar sent them back
    assert "Set-Cookie" not in (await client.get("/mc/v1/support", headers=APIKEY)).headers


async def test_new_free_space_keys_appear_on_every_answer(client: Client, sim: Simulator) -> None:
    mc = sim.instance("mc")
    mc.faults.new_free_space_keys = 3

    async def extra() -> set[str]:
        support = (await get_json(client, "/mc/v1/support"))["support"]
        keys = set()
        for entry in support.values():
            mine = {k for k in entry if k.startswith("free_space_")} - {
                "free_space_data",
                "free_space_logs",
                "free_space_media_incoming",
                "free_space_media_outgoing",
            }
            assert len(mine) == 3 and "socket_conn" in entry
            keys |= mine
        return keys

    first, second = await extra(), await extra()
    assert len(first) == 3 * 7 and not first & second


async def test_drip_sends_the_real_body_a_byte_at_a_time(client: Client, sim: Simulator) -> None:
    sim.instance("one").faults.drip = 0.02
    sim.instance("one").faults.set_cookie = True
    resp = await client.get("/one/v1/support", headers=APIKEY)
    assert resp.status == 200
    assert resp.headers["Set-Cookie"].startswith("wa_session=")
    assert resp.content_length == len(sim.instance("one").support_body(START))
    assert await resp.content.readexactly(5) == b'{"sup'
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await resp.read()
    resp.close()


# --------------------------------------------------------------------------- docs


def test_simulator_doc_names_every_switch_and_kind() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "simulator.md").read_text()
    names = [f.name for f in dataclasses.fields(Faults)]
    for name in (*names, *BROKEN_PICTURES, *ENDPOINTS[1:]):
        assert f"`{name}`" in doc, name
