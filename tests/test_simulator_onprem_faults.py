"""The On-Premises simulator's fault switches do what they say, or the fault tests lie."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientTimeout

from tests.conftest import SIM_APIKEY, SIM_START, Client, assert_error_envelope, basic, get_json
from whatsapp_api_simulator.onprem import Simulator
from whatsapp_api_simulator.onprem_model import BROKEN_PICTURES, ENDPOINTS, Faults

# --------------------------------------------------------------------------- faults


async def test_latency_fault_delays_but_answers(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    onprem_sim.instance("one").faults.latency = 0.01
    assert "support" in await get_json(onprem_client, "/one/v1/support")


async def test_hang_fault_never_answers(onprem_client: Client, onprem_sim: Simulator) -> None:
    onprem_sim.instance("one").faults.hang = True
    with pytest.raises(TimeoutError):
        await onprem_client.get(
            "/one/v1/support", headers=SIM_APIKEY, timeout=ClientTimeout(total=0.2)
        )


async def test_status_fault_503_with_retry_after(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    onprem_sim.instance("one").faults.status = 503
    onprem_sim.instance("one").faults.retry_after = "5"
    resp = await onprem_client.get("/one/v1/support")  # faults come before auth
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert_error_envelope(await resp.json(), 1011)
    login = await onprem_client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    assert login.status == 503


async def test_status_fault_other_than_503_is_internal_error(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    onprem_sim.instance("one").faults.status = 500
    assert_error_envelope(await get_json(onprem_client, "/one/v1/support", 500), 1014)


async def test_malformed_body_fault_is_sent_verbatim(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    onprem_sim.instance("one").faults.body = b'{"support": {'
    resp = await onprem_client.get("/one/v1/support", headers=SIM_APIKEY)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.read() == b'{"support": {'


async def test_body_size_fault_streams_exactly_that_many_bytes(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    size = 3 * 64 * 1024 + 17
    onprem_sim.instance("one").faults.body_size = size
    resp = await onprem_client.get("/one/v1/support", headers=SIM_APIKEY)
    assert resp.status == 200
    assert resp.content_length == size
    total = 0
    first = b""
    async for chunk in resp.content.iter_chunked(65536):
        first = first or chunk
        total += len(chunk)
    assert total == size
    assert first.startswith(b'{"support"')


async def test_payload_override_is_returned_exactly(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    onprem_sim.instance("one").payload = {"version": "v9.9.9", "socket_conn": "UNK"}
    doc = await get_json(onprem_client, "/one/v1/support")
    assert doc["support"] == {"version": "v9.9.9", "socket_conn": "UNK"}


async def test_reject_api_key_fault_requires_a_bearer_token_on_support(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    onprem_sim.instance("one").faults.reject_api_key = True
    assert_error_envelope(await get_json(onprem_client, "/one/v1/support", 401), 1005)
    await get_json(onprem_client, "/one/v1/health")  # health still takes the key
    resp = await onprem_client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    bearer = {"Authorization": f"Bearer {(await resp.json())['users'][0]['token']}"}
    assert "support" in await get_json(onprem_client, "/one/v1/support", headers=bearer)


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
    onprem_client: Client, onprem_sim: Simulator, fault: dict[str, Any], status: int
) -> None:
    mc = onprem_sim.instance("mc")
    for endpoint in ("health", "shards"):
        for key, value in fault.items():
            setattr(mc.faults_for(endpoint), key, value)
    path = {"health": "/mc/v1/health", "shards": "/mc/v1/account/shards"}
    for endpoint, url in path.items():
        resp = await onprem_client.get(url, headers=SIM_APIKEY)
        assert resp.status == status, endpoint
        body = await resp.read()
        if status == 404:
            assert_error_envelope(orjson.loads(body), 1006)
        if "body" in fault:
            assert body == fault["body"]
    assert "support" in await get_json(onprem_client, "/mc/v1/support")


async def test_hang_on_health_only(onprem_client: Client, onprem_sim: Simulator) -> None:
    onprem_sim.instance("one").faults_for("health").hang = True
    with pytest.raises(TimeoutError):
        await onprem_client.get(
            "/one/v1/health", headers=SIM_APIKEY, timeout=ClientTimeout(total=0.2)
        )
    assert "support" in await get_json(onprem_client, "/one/v1/support")


def test_faults_for_an_unknown_endpoint_is_refused(onprem_sim: Simulator) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        onprem_sim.add_instance("one").faults_for("metrics")


async def test_requests_are_counted_per_endpoint_per_instance(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    for _ in range(3):
        await get_json(onprem_client, "/mc/v1/support")
    await get_json(onprem_client, "/mc/v1/health")
    await get_json(onprem_client, "/one/v1/account/shards")
    await onprem_client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    assert onprem_sim.instance("mc").requests == {"support": 3, "health": 1}
    assert onprem_sim.instance("one").requests == {"shards": 1, "login": 1}
    assert onprem_sim.instance("ha").requests == {}


@pytest.mark.parametrize("value", ["²", "-5", "99999999", "Wed, 21 Oct 2026 07:28:00 GMT"])
async def test_retry_after_is_sent_verbatim(
    onprem_client: Client, onprem_sim: Simulator, value: str
) -> None:
    onprem_sim.instance("one").faults.status = 429
    onprem_sim.instance("one").faults.retry_after = value
    resp = await onprem_client.get("/one/v1/support", headers=SIM_APIKEY)
    assert resp.status == 429
    assert dict(resp.raw_headers)[b"Retry-After"] == value.encode()


async def test_login_hands_out_a_token_with_cr_lf_verbatim(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    onprem_sim.instance("one").faults_for("login").login_token = "tok\r\nX-Injected: yes"
    resp = await onprem_client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    assert (await resp.json())["users"][0]["token"] == "tok\r\nX-Injected: yes"
    assert "X-Injected" not in resp.headers


async def test_set_cookie_on_every_answer_and_cookies_sent_back_are_counted(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    one = onprem_sim.instance("one")
    one.faults.set_cookie = True
    seen = set()
    for path, headers, status in [
        ("/one/v1/support", SIM_APIKEY, 200),
        ("/one/v1/health", {}, 401),
        ("/one/v1/account/shards", SIM_APIKEY, 200),
    ]:
        resp = await onprem_client.get(path, headers=headers)
        assert resp.status == status
        seen.add(resp.headers["Set-Cookie"])
    assert len(seen) == 3
    assert one.cookies_received == 2  # the test client's cookie jar sent them back
    assert (
        "Set-Cookie" not in (await onprem_client.get("/mc/v1/support", headers=SIM_APIKEY)).headers
    )


async def test_new_free_space_keys_appear_on_every_answer(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    mc = onprem_sim.instance("mc")
    mc.faults.new_free_space_keys = 3

    async def extra() -> set[str]:
        support = (await get_json(onprem_client, "/mc/v1/support"))["support"]
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


async def test_drip_sends_the_real_body_a_byte_at_a_time(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    onprem_sim.instance("one").faults.drip = 0.02
    onprem_sim.instance("one").faults.set_cookie = True
    resp = await onprem_client.get("/one/v1/support", headers=SIM_APIKEY)
    assert resp.status == 200
    assert resp.headers["Set-Cookie"].startswith("wa_session=")
    assert resp.content_length == len(onprem_sim.instance("one").support_body(SIM_START))
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
