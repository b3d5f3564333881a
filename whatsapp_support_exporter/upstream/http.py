"""What both upstream clients share: the session, reading a capped body, and classifying failures.

Every failure of a request becomes one :class:`PollError` whose detail is safe to log: it names
what failed, never a URL's query, a header or a credential.
"""

from __future__ import annotations

import email.utils
import re
import ssl
from datetime import UTC

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError

from whatsapp_support_exporter import __version__
from whatsapp_support_exporter.upstream.errors import PollError, Reason

USER_AGENT = f"whatsapp-support-exporter/{__version__}"
# What a token or key may hold to be sent in a header (no spaces, no control characters).
HEADER_SAFE = re.compile(r"[!-~]+")


def new_session(max_connections: int, keepalive: float) -> aiohttp.ClientSession:
    """The one keep-alive session every target shares (TLS is chosen per request)."""
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        keepalive_timeout=keepalive,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # the attempt's own deadline is the only timeout (asyncio.timeout in Client.attempt)
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        raise_for_status=False,
        auto_decompress=True,
        # cookies of one upstream must never be replayed to another on the same host
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


def classify(err: BaseException) -> PollError:
    """An exception raised while talking to the upstream, as one reason and a safe detail."""
    if isinstance(err, PollError):
        return err
    if isinstance(err, TimeoutError):
        return PollError(Reason.TIMEOUT, "no answer within the poll timeout")
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return PollError(Reason.TLS, f"certificate not trusted: {brief(err.certificate_error)}")
    ssl_cause = err if isinstance(err, ssl.SSLError) else _ssl_cause(err)
    if isinstance(err, aiohttp.ClientSSLError) or ssl_cause is not None:
        return PollError(Reason.TLS, f"TLS failed: {brief(ssl_cause or err)}")
    if isinstance(err, aiohttp.ClientConnectorError):
        return PollError(Reason.CONNECT, f"cannot connect: {brief(err.os_error)}")
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return PollError(Reason.CONNECT, "the server closed the connection")
    if isinstance(err, aiohttp.ClientPayloadError):
        if isinstance(err.__cause__, ContentEncodingError):
            return PollError(Reason.INVALID_RESPONSE, "the body cannot be decompressed")
        return PollError(Reason.CONNECT, "the connection broke while reading the body")
    if isinstance(err, aiohttp.ClientResponseError):  # the HTTP parser refused the answer
        return PollError(Reason.INVALID_RESPONSE, f"malformed HTTP answer ({brief(err)})")
    if isinstance(err, aiohttp.ClientError | OSError):
        return PollError(Reason.CONNECT, err.__class__.__name__)
    raise err


def _ssl_cause(err: BaseException) -> ssl.SSLError | None:
    seen = 0
    cause = err.__cause__ or err.__context__
    while cause is not None and seen < 5:
        if isinstance(cause, ssl.SSLError):
            return cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


def brief(err: object) -> str:
    """The first line of an error's own words, without control characters, at most 200."""
    text = (
        getattr(err, "reason", None)
        or getattr(err, "strerror", None)
        or getattr(err, "message", None)
    )
    text = str(text or err or err.__class__.__name__)
    first = text.splitlines()[0] if text.strip() else err.__class__.__name__
    return "".join(c if c.isprintable() else "?" for c in first)[:200]


def status_error(status: int, retry_after: float | None, what: str) -> PollError:
    if status in (401, 403):
        return PollError(Reason.AUTH, f"{what} answered HTTP {status}")
    if status == 429:
        return PollError(Reason.RATE_LIMITED, f"{what} answered HTTP 429", retry_after)
    if status == 503:
        return PollError(Reason.UNAVAILABLE, f"{what} answered HTTP 503", retry_after)
    return PollError(Reason.HTTP, f"{what} answered HTTP {status}", retry_after)


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """Read the body, giving up as soon as it passes the size cap (never buffered whole)."""
    if resp.content_length is not None and resp.content_length > cap:
        raise PollError(
            Reason.INVALID_RESPONSE, f"body of {resp.content_length} bytes exceeds {cap}"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > cap:
            raise PollError(Reason.INVALID_RESPONSE, f"body exceeds {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
