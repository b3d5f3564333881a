"""Our endpoint costs a bounded amount per client: idle, slow, flooding or never reading."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import socket
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import wait_for
from whatsapp_support_exporter.web.server import CHUNK, Listener, send_body, start_server

BIG = b"x" * (8 * 1024 * 1024)  # more than loopback's socket buffers hold


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text="whatsapp_up 1\n")


async def big(request: web.Request) -> web.StreamResponse:
    return await send_body(request, BIG)


RELEASE = web.AppKey("release", asyncio.Event)


async def slow(request: web.Request) -> web.Response:
    await request.app[RELEASE].wait()
    return web.Response(text="done")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app[RELEASE] = asyncio.Event()
    return app


Start = Callable[..., Awaitable[tuple[Listener, int]]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """start_server on a loopback port with the given options; cleaned up after the test."""
    runners: list[Listener] = []

    async def run(**options: float) -> tuple[Listener, int]:
        runner = await start_server(make_app(), "127.0.0.1", 0, None, **options)  # type: ignore[arg-type]
        runners.append(runner)
        return runner, runner.addresses[0][1]

    yield run
    for runner in runners:
        await runner.cleanup()


async def scrape(port: int, path: str = "/metrics") -> int:
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        await resp.read()
        return resp.status


async def test_a_slow_loris_is_closed_after_the_keepalive_timeout(start: Start) -> None:
    _, port = await start(keepalive_timeout=0.4)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    closed_after = None
    for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
        writer.write(bytes([byte]))  # one byte every 50 ms: never a complete request
        try:
            if await asyncio.wait_for(reader.read(100), 0.05) == b"":
                closed_after = time.monotonic() - started
                break
        except TimeoutError:
            pass
    writer.close()
    assert closed_after is not None, "a client trickling its headers kept the connection"
    assert 0.3 < closed_after < 1.5


async def test_idle_connections_do_not_stop_a_fresh_scrape(start: Start) -> None:
    """200 idle connections against a cap of 100: the scrape is still answered, quickly."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    runner, port = await start(max_connections=100)
    idle = []
    try:
        for _ in range(200):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        assert runner.server is not None
        await wait_for(lambda: len(runner.server.connections) <= 101, within=1.0)  # type: ignore[union-attr]
        started = time.monotonic()
        assert await scrape(port) == 200
        assert time.monotonic() - started < 2.0
        assert len(runner.server.connections) <= 101
    finally:
        for _, writer in idle:
            writer.close()


async def test_at_the_cap_an_idle_connection_makes_room_not_one_with_a_request_in_progress(
    start: Start,
) -> None:
    listener, port = await start(max_connections=2)
    server = listener.server
    assert server is not None
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
    busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await busy_writer.drain()
    _, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    await wait_for(lambda: len(server.connections) == 2, within=1.0)
    await asyncio.sleep(0.05)  # the slow request has reached its handler
    assert await scrape(port) == 200  # a third connection: one of the two had to go
    listener.runner.app[RELEASE].set()
    assert (await asyncio.wait_for(busy_reader.readline(), 2.0)).startswith(b"HTTP/1.1 200")
    busy_writer.close()
    idle_writer.close()


async def test_a_client_that_never_reads_holds_one_chunk_and_is_cut_off(start: Start) -> None:
    runner, port = await start(write_timeout=0.5)
    sockets = []
    for _ in range(5):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        sock.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        sockets.append(sock)
    try:
        assert runner.server is not None
        server = runner.server

        def buffered() -> int:
            return sum(
                h.transport.get_write_buffer_size()
                for h in server.connections
                if h.transport is not None
            )

        await wait_for(lambda: len(server.connections) == 5 and buffered() > 0, within=1.0)
        # a couple of chunks each, not the rest of an 8 MiB body each
        assert buffered() <= 5 * 3 * CHUNK, f"{buffered()} bytes buffered for 5 clients"
        # no progress for write_timeout: the connections are aborted and their buffers freed
        await wait_for(lambda: not server.connections, within=2.5)
        assert await scrape(port) == 200
    finally:
        for sock in sockets:
            sock.close()


async def test_shutdown_with_a_stuck_download_keeps_its_promise(start: Start) -> None:
    runner, port = await start(shutdown_timeout=0.9)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    sock.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert runner.server is not None
        server = runner.server
        await wait_for(lambda: bool(server.connections), within=1.0)
        await asyncio.sleep(0.1)  # the download is under way and stuck
        started = time.monotonic()
        await runner.cleanup()
        took = time.monotonic() - started
        assert took < 0.9, f"shutdown took {took:.2f}s"
    finally:
        sock.close()


async def test_a_malformed_request_is_400_and_logged_at_debug_only(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    _, port = await start()
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    for request in (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        status = await asyncio.wait_for(reader.readline(), 2.0)
        writer.close()
        assert status.split()[1] in (b"400", b"431")
    assert await scrape(port) == 200
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]


async def test_a_taken_port_raises_a_clear_oserror_and_leaks_nothing() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
                await start_server(make_app(), "127.0.0.1", port, None)
            gc.collect()
        assert not [w for w in caught if "Unclosed" in str(w.message)]
    finally:
        taken.close()
