"""The On-Premises simulator lets in whom the real client would: API keys, logins, rate limit."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tests.conftest import (
    SIM_KEY,
    SIM_START,
    Client,
    FakeClock,
    assert_error_envelope,
    basic,
    get_json,
)
from whatsapp_api_simulator.onprem import Simulator

# --------------------------------------------------------------------------- auth


async def test_api_key_is_accepted(onprem_client: Client) -> None:
    assert "support" in await get_json(onprem_client, "/one/v1/support")


async def test_wrong_api_key_is_rejected_with_401_envelope(onprem_client: Client) -> None:
    doc = await get_json(
        onprem_client, "/one/v1/support", 401, headers={"Authorization": "Apikey wrong-key-123456"}
    )
    assert_error_envelope(doc, 1005)
    assert_error_envelope(await get_json(onprem_client, "/one/v1/support", 401, headers={}), 1005)


async def test_login_token_has_documented_format_and_works(
    onprem_client: Client, onprem_sim: Simulator, onprem_clock: FakeClock
) -> None:
    resp = await onprem_client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    assert resp.status == 200
    doc = await resp.json()
    user = doc["users"][0]
    assert re.fullmatch(r"[A-Za-z0-9_-]{20,}", user["token"])
    assert user["expires_after"] == datetime.fromtimestamp(SIM_START + 7 * 86400, UTC).strftime(
        "%Y-%m-%d %H:%M:%S+00:00"
    )
    assert doc["meta"] == {"api_status": "stable", "version": "v2.53.2"}
    assert onprem_sim.tokens_issued == 1
    bearer = {"Authorization": f"Bearer {user['token']}"}
    assert "support" in await get_json(onprem_client, "/mc/v1/support", headers=bearer)


async def test_expired_token_is_rejected_with_401(
    onprem_client: Client, onprem_clock: FakeClock
) -> None:
    resp = await onprem_client.post("/one/v1/users/login", headers=basic("admin", "s3cret-pass"))
    bearer = {"Authorization": f"Bearer {(await resp.json())['users'][0]['token']}"}
    onprem_clock.now += 7 * 86400 - 1
    await get_json(onprem_client, "/one/v1/support", headers=bearer)
    onprem_clock.now += 1
    assert_error_envelope(
        await get_json(onprem_client, "/one/v1/support", 401, headers=bearer), 1005
    )


async def test_wrong_password_login_is_rejected(
    onprem_client: Client, onprem_sim: Simulator
) -> None:
    resp = await onprem_client.post("/one/v1/users/login", headers=basic("admin", "nope"))
    assert resp.status == 401
    assert_error_envelope(await resp.json(), 1005)
    assert onprem_sim.tokens_issued == 0


async def test_login_is_disabled_without_password(aiohttp_client: Any) -> None:
    sim = Simulator(api_key=SIM_KEY)
    sim.add_instance("one")
    client = await aiohttp_client(sim.app())
    resp = await client.post("/v1/users/login", headers=basic("admin", ""))
    assert resp.status == 401


# --------------------------------------------------------------------------- rate limit


async def test_rate_limit_rejects_beyond_burst_then_refills(
    onprem_client: Client, onprem_sim: Simulator, onprem_clock: FakeClock
) -> None:
    for _ in range(60):
        await get_json(onprem_client, "/one/v1/support")
    assert_error_envelope(await get_json(onprem_client, "/one/v1/support", 429), 1015)
    assert onprem_sim.instance("one").requests["rejected"] == 1
    assert onprem_sim.instance("one").requests["support"] == 61
    await get_json(onprem_client, "/mc/v1/support")  # other instances have their own bucket
    onprem_clock.now += 1
    for _ in range(20):
        await get_json(onprem_client, "/one/v1/support")
    await get_json(onprem_client, "/one/v1/support", 429)


# --------------------------------------------------------------------------- credentials


async def test_instances_with_their_own_credentials_accept_only_those(
    aiohttp_client: Any, onprem_clock: FakeClock
) -> None:
    sim = Simulator(api_key=SIM_KEY, password="global-pass", clock=onprem_clock)
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
