"""The simulator must behave like the real WhatsApp Business API, or every test built on it lies."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp import ClientTimeout, web
from aiohttp.test_utils import TestClient

from exporter.simulator import (
    FAKE_DB_PASSWORD,
    UNLIMITED_FREE_SPACE,
    Container,
    Simulator,
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
    assert await get_json(client, "/mc/v1/account/shards") == {"account": {"shards": 4}}


async def test_ha_has_one_coreapp_owning_control_and_normal_shard(client: Client) -> None:
    support = (await get_json(client, "/ha/v1/support"))["support"]
    owners = [c for c in support.values() if c["shards"]]
    assert len(owners) == 1
    assert owners[0]["role"] == "coreapp"
    assert owners[0]["shards"] == [[-1, -1], [0, 0]]
    assert [c["role"] for c in support.values()].count("primary_master") == 1
    assert all(c["multi_connect"] is False for c in support.values())


async def test_health_connects_only_shard_owning_coreapps(client: Client) -> None:
    single = await get_json(client, "/one/v1/health")
    assert single == {"health": {"gateway_status": "connected"}}
    health = (await get_json(client, "/ha/v1/health"))["health"]
    connected = [h for h in health.values() if h["gateway_status"] == "connected"]
    assert len(connected) == 1 and connected[0]["role"] == "coreapp"


def test_invalid_shard_count_is_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="shards"):
        sim.add_instance("bad", "multiconnect", coreapps=3, shards=3)


async def test_env_carries_fake_secrets_as_a_trap(client: Client) -> None:
    env = (await get_json(client, "/one/v1/support"))["support"]["env"]
    assert f"WA_DB_PASSWORD={FAKE_DB_PASSWORD}" in env
    assert f"WA_API_KEY={KEY}" in env


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
    assert doc == {"support": {"version": "v9.9.9", "socket_conn": "UNK"}}


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


def test_module_runs_and_prints_targets() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter.simulator",
            "--listen",
            "127.0.0.1:0",
            "--single",
            "2",
            "--multiconnect",
            "1",
            "--shards",
            "2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    names = [part.split("=", 1)[0] for part in line.split(",")]
    assert names == ["single-0", "single-1", "mc-0"]
    assert line.split(",")[0] == "single-0=http://127.0.0.1:0/single-0"
