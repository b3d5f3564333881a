"""Serve the web app so that each client costs a bounded amount, whatever it does.

aiohttp's defaults trust the client: an hour of keep-alive, no cap on connections, no limit on
how long a response may sit unread in memory. Here:

- a connection that has not sent a complete request within ``keepalive_timeout`` of opening
  (or of its last response) is closed: idle and slow-loris clients alike;
- at ``max_connections`` the longest-open idle connection is closed to make room for a new
  one (as nginx reuses keep-alive connections); with none idle, the new one is answered 503
  and closed at once, so descriptors never run out and a fresh scrape is still answered;
- a response whose bytes make no progress for ``write_timeout`` is aborted, so a client that
  never reads cannot pin memory; ``send_body`` writes large bodies in chunks so that such a
  client holds at most one chunk in our buffers, not a copy of the body;
- malformed requests are logged at debug (the client's mistake, not ours);
- stopping takes at most ``shutdown_timeout``: requests in flight get most of it, then every
  connection left is aborted.

Only aiohttp's documented interfaces are used: ``web.Server`` (``runner.server``) is the protocol
factory of ``loop.create_server``, as aiohttp's low-level server documentation describes, wrapped
by our guard; a middleware tells which connections have a request in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KEEPALIVE_TIMEOUT = 15.0
WRITE_TIMEOUT = 15.0
TLS_HANDSHAKE_TIMEOUT = 10.0
# Chunk size of send_body: what a client that stops reading can hold in our buffers.
CHUNK = 64 * 1024
_SWEEP_INTERVAL = 1.0
_REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_server_log = logging.getLogger("aiohttp.server")


def default_max_connections() -> int:
    """A quarter of the descriptor limit (the pollers need the rest), between 16 and 1024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 4))


class _ClientErrors(logging.Filter):
    """A malformed request is the client's mistake: debug, not an error with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno > logging.DEBUG and isinstance(
            exc, (HttpProcessingError, ConnectionResetError)
        ):
            if not _server_log.isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info, record.exc_text = None, None
            record.msg = f"{record.msg}: {exc.__class__.__name__}"
        return True


_CLIENT_ERRORS = _ClientErrors()


class _Refuse(asyncio.Protocol):
    """Over the connection cap with nothing idle to close: 503 and close at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writable = cast(asyncio.WriteTransport, transport)  # uvloop's is no asyncio subclass
        writable.write(_REFUSAL)
        writable.close()


class _Guard:
    """The protocol factory (connection cap) and the write-progress sweep of one site."""

    def __init__(self, runner: web.AppRunner, max_connections: int, write_timeout: float):
        self.runner = runner
        self.max_connections = max_connections
        self.write_timeout = write_timeout
        self.handlers: set[RequestHandler] = set()
        self._stalled: dict[RequestHandler, tuple[int, float]] = {}  # buffered, since
        # transports with a request being handled, and how many (pipelining)
        self.in_progress: dict[asyncio.BaseTransport, int] = {}

    @web.middleware
    async def track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Mark the request's connection busy while its handler runs."""
        transport = request.transport
        if transport is None:
            return await handler(request)
        self.in_progress[transport] = self.in_progress.get(transport, 0) + 1
        try:
            return await handler(request)
        finally:
            left = self.in_progress.pop(transport) - 1
            if left:
                self.in_progress[transport] = left

    def busy(self, handler: RequestHandler) -> bool:
        """A request is being handled or its response is still being sent."""
        transport = handler.transport
        if transport is None:
            return False
        return transport in self.in_progress or transport.get_write_buffer_size() > 0

    def __call__(self) -> asyncio.BaseProtocol:
        server = self.runner.server
        assert server is not None
        self.handlers = {h for h in self.handlers if h.transport is not None}
        if len(server.connections) >= self.max_connections:
            idle = next((h for h in server.connections if not self.busy(h)), None)
            if idle is None:
                return _Refuse()
            idle.force_close()
        handler = server()
        self.handlers.add(handler)
        return handler

    async def sweep(self) -> None:
        """Abort connections whose buffered response has made no progress for write_timeout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(_SWEEP_INTERVAL, self.write_timeout / 2))
            now = loop.time()
            stalled: dict[RequestHandler, tuple[int, float]] = {}
            for handler in list(self.handlers):
                transport = handler.transport
                if transport is None:
                    self.handlers.discard(handler)
                    continue
                buffered = transport.get_write_buffer_size()
                if buffered == 0:
                    continue
                before, since = self._stalled.get(handler, (buffered + 1, now))
                if buffered < before:
                    since = now  # the client read something
                if now - since >= self.write_timeout:
                    transport.abort()
                else:
                    stalled[handler] = (buffered, since)
            self._stalled = stalled

    def abort_all(self) -> None:
        for handler in self.handlers:
            if handler.transport is not None:
                handler.transport.abort()
        self.handlers.clear()


class Listener:
    """A running server: the app's runner and our listening socket; ``cleanup()`` stops both."""

    def __init__(self, runner: web.AppRunner, listening: asyncio.AbstractServer) -> None:
        self.runner = runner
        self.listening = listening

    @property
    def server(self) -> web.Server | None:
        """aiohttp's low-level server: its ``connections`` are the open connections."""
        return self.runner.server

    @property
    def addresses(self) -> list[Any]:
        """The bound addresses (the port chosen for port 0)."""
        sockets = getattr(self.listening, "sockets", None) or ()
        return [sock.getsockname() for sock in sockets]

    async def cleanup(self) -> None:
        """Stop listening, then let aiohttp finish or cancel the requests in flight."""
        self.listening.close()
        await self.runner.cleanup()


async def start_server(
    app: web.Application,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    shutdown_timeout: float = 3.0,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    write_timeout: float = WRITE_TIMEOUT,
    max_connections: int | None = None,
) -> Listener:
    """Start ``app`` (its startup hooks run) and listen; ``await listener.cleanup()`` stops it.

    ``host`` None or "" listens on every interface. A port that cannot be bound raises OSError
    naming the address, after the app has been cleaned up again.
    """
    if _CLIENT_ERRORS not in _server_log.filters:
        _server_log.addFilter(_CLIENT_ERRORS)
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,
        # aiohttp waits this long twice (for the handler, then for it after cancelling the
        # request): requests in flight get two thirds, the rest is for aborting and cleanup
        shutdown_timeout=shutdown_timeout / 3,
        keepalive_timeout=keepalive_timeout,
        max_line_size=8190,
        max_field_size=8190,
        max_headers=64,
        lingering_time=1.0,
    )
    guard = _Guard(runner, max_connections or default_max_connections(), write_timeout)

    async def sweeping(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(guard.sweep(), name="sweep stalled responses")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        guard.abort_all()  # whatever the graceful shutdown left: clients not reading

    app.cleanup_ctx.append(sweeping)
    app.middlewares.insert(0, guard.track)  # outermost: before authentication
    await runner.setup()
    loop = asyncio.get_running_loop()
    try:
        listening = await loop.create_server(
            guard,
            host or None,
            port,
            ssl=ssl_context,
            reuse_address=True,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if ssl_context else None,
        )
    except OSError as err:
        await runner.cleanup()
        where = f"{host or '*'}:{port}"
        raise OSError(err.errno, f"cannot listen on {where}: {err.strerror or err}") from None
    return Listener(runner, listening)


async def send_body(
    request: web.Request, body: bytes, *, status: int = 200, headers: Any = None
) -> web.StreamResponse:
    """Send ``body`` in CHUNK-sized writes: a client that stops reading holds one chunk of ours.

    (``web.Response(body=...)`` hands the whole body to the transport, which copies what the
    socket does not take at once.)
    """
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    view = memoryview(body)
    for start in range(0, len(view), CHUNK):
        await response.write(view[start : start + CHUNK])
    await response.write_eof()
    return response
