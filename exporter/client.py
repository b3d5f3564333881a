"""Talks to one WhatsApp Business API client: auth, the request, a capped read, and what failed.

Every failure leaves here as a :class:`PollError` carrying exactly one reason of
``collector.ERROR_REASONS`` and a detail safe to log (never a credential, never a body).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

import aiohttp
import orjson
from pydantic import SecretStr

from exporter import __version__
from exporter.settings import Settings, Target
from exporter.support import parse_timestamp

log = logging.getLogger("exporter.client")

USER_AGENT = f"whatsapp-support-exporter/{__version__}"
# Renew a login token this long before the upstream says it expires.
TOKEN_MARGIN = 300.0
# A token whose expiry is missing or unreadable is used until the upstream answers 401.
TOKEN_FALLBACK_LIFETIME = 24 * 3600.0
# Retry-After beyond this is treated as this (a misconfigured upstream must not park us for days).
MAX_RETRY_AFTER = 3600.0


class PollError(Exception):
    """A failed poll: one reason, a loggable detail, and how long the upstream asked us to wait."""

    def __init__(self, reason: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True)
class Credentials:
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None

    @property
    def can_login(self) -> bool:
        return self.username is not None and self.password is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        return cls(settings.api_key, settings.username, settings.password)


def ssl_context(settings: Settings) -> ssl.SSLContext | bool:
    """The upstream TLS policy: a CA file, the system store, or (with a warning) no checks."""
    if not settings.tls_verify:
        log.warning("TLS certificate verification of the upstream is off")
        return False
    cafile = str(settings.tls_ca_file) if settings.tls_ca_file else None
    return ssl.create_default_context(cafile=cafile)


def new_session(settings: Settings) -> aiohttp.ClientSession:
    """The one keep-alive session every target shares."""
    connector = aiohttp.TCPConnector(
        ssl=ssl_context(settings),
        limit=settings.max_concurrency,
        limit_per_host=0,
        keepalive_timeout=min(settings.poll_interval + 5.0, 75.0),
        enable_cleanup_closed=True,
    )
    timeout = aiohttp.ClientTimeout(
        total=settings.poll_timeout,
        sock_connect=settings.poll_timeout,
        sock_read=settings.poll_timeout,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        raise_for_status=False,
        auto_decompress=True,
    )


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - now, 0.0), MAX_RETRY_AFTER)


def classify(err: BaseException) -> PollError:
    """An exception raised while talking to the upstream, as a reason and a safe detail."""
    if isinstance(err, PollError):
        return err
    if isinstance(err, TimeoutError):
        return PollError("timeout", "no answer within the poll timeout")
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return PollError("tls", f"certificate not trusted: {err.certificate_error}")
    if isinstance(err, aiohttp.ClientSSLError | ssl.SSLError) or isinstance(
        getattr(err, "__cause__", None), ssl.SSLError
    ):
        return PollError("tls", f"TLS handshake failed: {_reason_text(err)}")
    if isinstance(err, aiohttp.ClientConnectorError):
        return PollError("connect", f"cannot connect: {_reason_text(err.os_error)}")
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return PollError("connect", "the server closed the connection")
    if isinstance(err, aiohttp.ClientPayloadError):
        return PollError("connect", "the connection broke while reading the body")
    if isinstance(err, aiohttp.ClientError | OSError):
        return PollError("connect", f"{err.__class__.__name__}")
    raise err


def _reason_text(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err)
    return str(text).splitlines()[0][:200] if text else err.__class__.__name__


def _status_error(status: int, retry_after: float | None, what: str) -> PollError:
    if status in (401, 403):
        return PollError("auth", f"{what} answered HTTP {status}")
    if status == 429:
        return PollError("rate_limited", f"{what} answered HTTP 429", retry_after)
    if status == 503:
        return PollError("unavailable", f"{what} answered HTTP 503", retry_after)
    return PollError("http", f"{what} answered HTTP {status}", retry_after)


class SupportClient:
    """One target's conversation with its upstream; remembers which credential works."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        credentials: Credentials,
        *,
        max_response_bytes: int,
        on_login: Callable[[str], None] = lambda result: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.target = target
        self.credentials = credentials
        self.max_response_bytes = max_response_bytes
        self.on_login = on_login
        self.clock = clock
        self.use_token = credentials.api_key is None
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._login_lock = asyncio.Lock()
        self.support_url = f"{target.url}/v1/support"
        self.login_url = f"{target.url}/v1/users/login"

    async def fetch_support(self) -> bytes:
        """GET /v1/support and return its body; raise PollError on any failure."""
        try:
            return await self._fetch_support()
        except PollError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError) as err:
            raise classify(err) from None

    async def _fetch_support(self) -> bytes:
        for attempt in range(2):
            headers = await self._auth_header()
            # no redirects: one could carry the credential to another host
            async with self.session.get(
                self.support_url, headers=headers, allow_redirects=False
            ) as resp:
                if resp.status == 401 and attempt == 0 and self._may_retry_auth():
                    continue
                if resp.status >= 300:
                    raise _status_error(
                        resp.status,
                        retry_after_seconds(resp.headers.get("Retry-After"), self.clock()),
                        "/v1/support",
                    )
                return await self._read(resp)
        raise PollError("auth", "/v1/support answered HTTP 401")  # pragma: no cover

    def _may_retry_auth(self) -> bool:
        """After a 401: switch from the key to a token, or renew the token, once per poll."""
        if not self.use_token:
            if not self.credentials.can_login:
                return False
            log.info(
                "API key rejected on /v1/support, switching to a login token",
                extra={"target": self.target.name},
            )
            self.use_token = True
            return True
        if self.credentials.can_login:
            self._token = None
            return True
        return False

    async def _auth_header(self) -> dict[str, str]:
        if not self.use_token:
            assert self.credentials.api_key is not None
            return {"Authorization": f"Apikey {self.credentials.api_key.get_secret_value()}"}
        if not self.credentials.can_login:
            return {}
        async with self._login_lock:
            if self._token is None or self.clock() >= self._token_renew_at:
                await self._login()
        assert self._token is not None
        return {"Authorization": f"Bearer {self._token}"}

    async def _login(self) -> None:
        """POST /v1/users/login with Basic auth; keep the token until shortly before it expires."""
        assert self.credentials.username is not None and self.credentials.password is not None
        pair = f"{self.credentials.username}:{self.credentials.password.get_secret_value()}"
        basic = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        try:
            async with self.session.post(
                self.login_url, headers=basic, allow_redirects=False
            ) as resp:
                if resp.status >= 300:
                    raise _status_error(
                        resp.status,
                        retry_after_seconds(resp.headers.get("Retry-After"), self.clock()),
                        "login",
                    )
                body = await self._read(resp)
            token, expires = _token_from(body)
        except BaseException:
            self.on_login("failure")
            raise
        self.on_login("success")
        now = self.clock()
        lifetime = TOKEN_FALLBACK_LIFETIME if expires is None else expires - now
        self._token = token
        self._token_renew_at = now + max(lifetime - min(TOKEN_MARGIN, lifetime / 10), 0.0)
        log.debug("logged in", extra={"target": self.target.name})

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """Read the body, giving up as soon as it passes the size cap (never buffered whole)."""
        cap = self.max_response_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise PollError(
                "invalid_response", f"body of {resp.content_length} bytes exceeds {cap}"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > cap:
                raise PollError("invalid_response", f"body exceeds {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _token_from(body: bytes) -> tuple[str, float | None]:
    """The token and its expiry (Unix seconds) from a login response."""
    try:
        document = orjson.loads(body)
        user = document["users"][0]
        token = user["token"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        raise PollError("invalid_response", "login response has no token") from None
    if not isinstance(token, str) or not token:
        raise PollError("invalid_response", "login response has no token")
    expires: float | None
    try:
        expires = parse_timestamp(user.get("expires_after")).timestamp()
    except (ValueError, TypeError):
        expires = None
    return token, expires
