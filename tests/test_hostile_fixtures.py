"""The hostile fixtures are what they claim: bodies that hurt a parser, answers aiohttp won't send."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import orjson
import pytest
from aiohttp import ClientTimeout

from tests.hostile import (
    colliding_keys_body,
    huge_number_body,
    huge_shards_body,
    many_containers_body,
    start_raw_server,
)


def test_many_containers_body_has_that_many_keyed_containers() -> None:
    doc = orjson.loads(many_containers_body(100_000))
    support = doc["support"]
    assert len(support) == 100_000
    assert len({key.rpartition(":")[2] for key in support}) == 100_000
    assert all(entry == {"socket_conn": "UP"} for entry in support.values())
    assert doc["meta"]["api_status"] == "stable"


def test_huge_shards_body_claims_the_range_on_every_container() -> None:
    support = orjson.loads(huge_shards_body(1500, 0, 1022))["support"]
    assert len(support) == 1500
    assert {str(c["shards"]) for c in support.values()} == {"[[0, 1022]]"}


def test_colliding_keys_split_into_the_same_host_and_id() -> None:
    support = orjson.loads(colliding_keys_body())["support"]
    assert set(support) == {"b:", "b"}
    split = set()
    for key in support:  # host and container id as the exporter splits them (at the last colon)
        host, _, container_id = key.rpartition(":")
        split.add((host, container_id) if host else (key, ""))
    assert split == {("b", "")}


def test_huge_number_body_is_refused_by_strict_json_and_is_infinite_otherwise() -> None:
    body = huge_number_body()
    assert b"1e400" in body
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    assert json.loads(body)["support"]["e2e"]["registration_id"] == float("inf")


# --------------------------------------------------------------------------- raw TCP answers


async def raw_exchange(url: str) -> bytes:
    """Send one GET and read whatever comes back until the server hangs up."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /v1/support HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


@pytest.mark.parametrize(
    ("kind", "head"),
    [
        ("garbage_status", b"HTTP/1.1 two hundred OKAY\r\n"),
        ("negative_content_length", b"HTTP/1.1 200 OK\r\n"),
        ("wrong_content_length", b"HTTP/1.1 200 OK\r\n"),
        ("corrupt_gzip", b"HTTP/1.1 200 OK\r\n"),
        ("close", b""),
    ],
)
async def test_raw_server_sends_what_aiohttp_would_not_and_clients_fail(
    kind: str, head: bytes
) -> None:
    async with await start_raw_server(kind) as raw:
        data = await raw_exchange(raw.url)
        assert data.startswith(head) and (data or kind == "close")
        if kind == "negative_content_length":
            assert b"Content-Length: -5\r\n" in data
        if kind == "wrong_content_length":
            declared = int(re.search(rb"Content-Length: (\d+)", data).group(1))  # type: ignore[union-attr]
            assert declared > len(data.split(b"\r\n\r\n", 1)[1])
        if kind == "corrupt_gzip":
            assert b"Content-Encoding: gzip\r\n" in data
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"{raw.url}/v1/support") as resp:
                    await resp.read()
        assert raw.connections >= 2  # aiohttp may retry a connection that was dropped


async def test_raw_silent_server_accepts_and_never_answers() -> None:
    async with await start_raw_server("silent") as raw:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(TimeoutError):
                await session.get(f"{raw.url}/v1/support", timeout=ClientTimeout(total=0.2))
        assert raw.connections == 1


async def test_raw_server_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        await start_raw_server("teapot")
