"""Hostile upstreams for the tests: bodies built to hurt a parser, raw TCP answers that aiohttp
refuses to send, and secrets planted in the simulator's `env` list.

The simulator serves any of these bodies verbatim through `Faults.body`; these are test fixtures,
not part of the product (`bench/neighbours.py` borrows two bodies and the silent server).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from types import TracebackType

import orjson

from whatsapp_api_simulator.onprem_model import DEFAULT_VERSION

# Planted in every container's `env` (`Simulator(env=PLANTED_ENV)`), so tests can prove such
# secrets never leave the exporter.
FAKE_DB_PASSWORD = "hunter2-secret"
PLANTED_ENV = {"WA_DB_PASSWORD": FAKE_DB_PASSWORD}
RAW_KINDS = (
    "garbage_status",
    "negative_content_length",
    "wrong_content_length",
    "corrupt_gzip",
    "silent",
    "close",
)


def _meta_suffix() -> bytes:
    return b',"meta":{"api_status":"stable","version":"' + DEFAULT_VERSION.encode() + b'"}}'


def many_containers_body(count: int = 100_000) -> bytes:
    """A keyed support body of `count` tiny containers (each only `socket_conn: UP`)."""
    entries = b",".join(b'"h%d:%012x":{"socket_conn":"UP"}' % (i, i) for i in range(count))
    return b'{"support":{' + entries + b"}" + _meta_suffix()


def huge_shards_body(containers: int = 1500, first: int = 0, last: int = 1022) -> bytes:
    """A keyed support body whose every Coreapp claims the shard range `[first, last]`."""
    entry = orjson.dumps({"role": "coreapp", "shards": [[first, last]], "multi_connect": True})
    entries = b",".join(b'"core%d:%012x":' % (i, i) + entry for i in range(containers))
    return b'{"support":{' + entries + b"}" + _meta_suffix()


def colliding_keys_body() -> bytes:
    """Keys `b:` and `b` both split into host `b` and an empty container id."""
    entry = orjson.dumps({"role": "coreapp", "shards": [], "socket_conn": "UP"})
    return b'{"support":{"b:":' + entry + b',"b":' + entry + b"}" + _meta_suffix()


def huge_number_body() -> bytes:
    """A single-instance body with 1e400 (past any float) in `e2e`, a field nobody exports.

    Written as raw text: JSON encoders refuse to produce it, and strict decoders refuse it.
    """
    return (
        b'{"support":{"socket_conn":"UP","version":"'
        + DEFAULT_VERSION.encode()
        + b'","e2e":{"identity_timestamp":"2025-01-01T00:00:00","registration_id":1e400}}'
        + _meta_suffix()
    )


# --------------------------------------------------------------------- raw TCP answers


@dataclass
class RawServer:
    """A TCP server answering every request with one of `RAW_KINDS` (what aiohttp won't send).

    Use `async with await start_raw_server(kind) as raw:`, or call `close()`.
    """

    kind: str
    host: str
    port: int
    server: asyncio.AbstractServer
    connections: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The base URL to give the exporter as a target."""
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        self.server.close()
        for writer in list(self._writers):
            writer.close()
        await self.server.wait_closed()

    async def __aenter__(self) -> RawServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _raw_answer(kind: str) -> bytes:
    body = b'{"support":{"socket_conn":"UP"}}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    if kind == "garbage_status":
        return b"HTTP/1.1 two hundred OKAY\r\nContent-Length: 2\r\n\r\n{}"
    if kind == "negative_content_length":
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n"
            + body
        )
    if kind == "wrong_content_length":  # announces more than it sends, then hangs up
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            + body
        )
    if kind == "corrupt_gzip":
        gz = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03this is not deflate data at all"
        return head + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gz) + gz
    return b""  # "close": no answer at all


async def start_raw_server(kind: str, host: str = "127.0.0.1", port: int = 0) -> RawServer:
    """Serve `kind` on a TCP port (0: any free one); every connection gets the same answer.

    `silent` accepts and never reads nor answers; `close` reads the request and hangs up;
    the others read the request head, send their malformed answer and close.
    """
    if kind not in RAW_KINDS:
        raise ValueError(f"kind must be one of {RAW_KINDS}, not {kind!r}")
    answer = _raw_answer(kind)
    raw: RawServer | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert raw is not None
        raw.connections += 1
        raw._writers.add(writer)
        try:
            if kind == "silent":
                await reader.read()  # returns when the client (or close()) drops the connection
                return
            with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            raw._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()
    raw = RawServer(kind, bound[0], bound[1], server)
    return raw
