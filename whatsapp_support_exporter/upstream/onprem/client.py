"""One attempt on one WhatsApp Business API client: auth, the requests, capped reads, the verdict.

Like blackbox_exporter's ``ProbeFn``, an attempt owns everything about itself: one deadline, one
classification of what failed, and one outcome, an :class:`Answer` or a :class:`PollError`.
The upstream's behaviour we rely on (auth, token lifetime, shapes) is described in
``docs/upstream-api.md``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

import aiohttp
import orjson

from whatsapp_support_exporter.upstream.errors import PollError, Reason
from whatsapp_support_exporter.upstream.http import (
    HEADER_SAFE,
    brief,
    classify,
    read_capped,
    retry_after_seconds,
    status_error,
)
from whatsapp_support_exporter.upstream.onprem.support import (
    Health,
    InvalidResponse,
    Support,
    parse_health,
    parse_shard_count,
    parse_support,
    parse_timestamp,
)
from whatsapp_support_exporter.upstream.onprem.target import Target

log = logging.getLogger("whatsapp_support_exporter.upstream.onprem.client")

# Renew a login token this long before the upstream says it expires.
TOKEN_MARGIN = 300.0
# A token whose expiry is missing or unreadable is used until the upstream answers 401.
TOKEN_FALLBACK_LIFETIME = 24 * 3600.0
# Bodies larger than this are parsed in a worker thread, so a big answer never stalls the loop.
THREAD_PARSE_BYTES = 64 * 1024

T = TypeVar("T")
_NO_LOGINS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True)
class Answer:
    """A successful attempt: the support data, and what the optional endpoints said."""

    support: Support
    received_at: float
    health: Health | None = None
    shards_configured: int | None = None
    # per optional endpoint asked: None if it answered well, else why not
    endpoints: tuple[tuple[str, PollError | None], ...] = ()


class Client:
    """One target's conversation with its upstream; remembers which credential works."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        *,
        timeout: float,
        max_response_bytes: int,
        max_series: int | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.target = target
        self.credentials = target.credentials
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.max_series = max_series
        self.ssl = ssl_context
        self.clock = clock
        # logins by result ("success", "failure"): replaced, never changed, so a snapshot can
        # hold it as it is (the client keeps its own count: a callback into the poller would
        # tie the two in a reference cycle that only the garbage collector undoes)
        self.logins: Mapping[str, int] = _NO_LOGINS
        self.use_token = not self.credentials.has_api_key
        self._api_key: str | None = None
        self._token: str | None = None
        self._token_renew_at = 0.0
        # made on the first login: most targets of a fleet never log in (an API key suffices)
        self._login_lock: asyncio.Lock | None = None

    def _url(self, path: str) -> str:
        return f"{self.target.url}{path}"

    async def attempt(self, *, health: bool = False, shards: bool = False) -> Answer:
        """GET /v1/support (and the optional endpoints asked for) within one deadline.

        Raises PollError when /v1/support fails; an optional endpoint that fails is reported in
        ``Answer.endpoints`` and never fails the attempt.
        """
        deadline = asyncio.get_running_loop().time() + self.timeout
        body = await self._within(deadline, self._get("/v1/support", retry_auth=True))
        received_at = self.clock()
        support = await self._parse(parse_support, body)
        endpoints: list[tuple[str, PollError | None]] = []
        gateways: Health | None = None
        shard_count: int | None = None
        if health:
            gateways, error = await self._optional(deadline, "/v1/health", parse_health)
            endpoints.append(("health", error))
        if shards and any(c.fields.multi_connect for c in support.containers):
            shard_count, error = await self._optional(
                deadline, "/v1/account/shards", lambda body, **_: parse_shard_count(body)
            )
            endpoints.append(("shards", error))
        return Answer(support, received_at, gateways, shard_count, tuple(endpoints))

    async def _optional(
        self, deadline: float, path: str, parse: Callable[..., T]
    ) -> tuple[T | None, PollError | None]:
        """An optional endpoint: its parsed answer, or why not; never raises."""
        try:
            return await self._parse(parse, await self._within(deadline, self._get(path))), None
        except PollError as err:
            return None, err

    async def _within(self, deadline: float, work: Awaitable[T]) -> T:
        """Run one request under the attempt's deadline; every failure becomes a PollError."""
        try:
            async with asyncio.timeout_at(deadline):
                return await work
        except TimeoutError:
            raise PollError(Reason.TIMEOUT, f"no answer within {self.timeout:g}s") from None
        except PollError:
            raise
        except (aiohttp.ClientError, OSError, ValueError) as err:
            raise classify(err) from None

    async def _parse(self, parse: Callable[..., T], body: bytes) -> T:
        """Parse a body (in a worker thread when large), bounded by the series limit."""
        try:
            if len(body) > THREAD_PARSE_BYTES:
                return await asyncio.to_thread(parse, body, max_series=self.max_series)
            return parse(body, max_series=self.max_series)
        except InvalidResponse as err:
            raise PollError(Reason.INVALID_RESPONSE, str(err)) from None

    async def _get(self, path: str, *, retry_auth: bool = False) -> bytes:
        for attempt in range(3):
            headers = await self._auth_header()
            # no redirects: one could carry the credential to another host
            async with self.session.get(
                self._url(path), headers=headers, allow_redirects=False, ssl=self.ssl
            ) as resp:
                if resp.status == 401 and retry_auth and attempt < 2 and self._after_401():
                    continue
                if resp.status >= 300:
                    raise status_error(
                        resp.status,
                        retry_after_seconds(resp.headers.get("Retry-After"), self.clock()),
                        path,
                    )
                return await self._read(resp)
        raise PollError(Reason.AUTH, f"{path} answered HTTP 401")

    def _after_401(self) -> bool:
        """After a 401: try a rotated key, then switch to a token, or renew the token."""
        if not self.use_token:
            old, self._api_key = self._api_key, None
            if self.credentials.api_key_file is not None and self._read_api_key() != old:
                return True  # the key file was rotated: try the new key first
            if not self.credentials.can_login:
                return False
            log.info(
                "API key rejected on /v1/support, switching to a login token",
                extra={"target": self.target.name},
            )
            self.use_token = True
            return True
        if self.credentials.can_login and self._token is not None:
            self._token = None
            return True
        return False

    def _read_api_key(self) -> str | None:
        try:
            key = self.credentials.read_api_key()
        except OSError as err:
            raise PollError(Reason.AUTH, f"cannot read the API key file ({brief(err)})") from None
        if key is not None and not HEADER_SAFE.fullmatch(key):
            raise PollError(Reason.AUTH, "the API key holds characters a header cannot carry")
        self._api_key = key
        return key

    async def _auth_header(self) -> dict[str, str]:
        if not self.use_token:
            key = self._api_key or self._read_api_key()
            return {"Authorization": f"Apikey {key}"} if key else {}
        if not self.credentials.can_login:
            return {}
        if self._login_lock is None:
            self._login_lock = asyncio.Lock()
        async with self._login_lock:
            if self._token is None or self.clock() >= self._token_renew_at:
                await self._login()
        assert self._token is not None
        return {"Authorization": f"Bearer {self._token}"}

    async def _login(self) -> None:
        """POST /v1/users/login with Basic auth; keep the token until shortly before it expires.

        The password file is read again for every login, so a rotated Secret heals by itself.
        Only a rejection (401/403) counts as a failed login; a login that could not reach the
        upstream fails the poll with its own reason.
        """
        try:
            password = self.credentials.read_password()
        except OSError as err:
            raise PollError(Reason.AUTH, f"cannot read the password file ({brief(err)})") from None
        pair = f"{self.credentials.username}:{password}"
        basic = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        async with self.session.post(
            self._url("/v1/users/login"), headers=basic, allow_redirects=False, ssl=self.ssl
        ) as resp:
            if resp.status >= 300:
                if resp.status in (401, 403):
                    self._count_login("failure")
                raise status_error(
                    resp.status,
                    retry_after_seconds(resp.headers.get("Retry-After"), self.clock()),
                    "login",
                )
            body = await self._read(resp)
        token, expires = _token_from(body)
        self._count_login("success")
        now = self.clock()
        lifetime = TOKEN_FALLBACK_LIFETIME if expires is None else expires - now
        self._token = token
        self._token_renew_at = now + max(lifetime - min(TOKEN_MARGIN, lifetime / 10), 0.0)
        log.debug("logged in", extra={"target": self.target.name})

    def _count_login(self, result: str) -> None:
        self.logins = MappingProxyType({**self.logins, result: self.logins.get(result, 0) + 1})

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        return await read_capped(resp, self.max_response_bytes)


def _token_from(body: bytes) -> tuple[str, float | None]:
    """The token and its expiry (Unix seconds) from a login response."""
    try:
        document = orjson.loads(body)
        user = document["users"][0]
        token = user["token"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        raise PollError(Reason.INVALID_RESPONSE, "login response has no token") from None
    if not isinstance(token, str) or not HEADER_SAFE.fullmatch(token):
        raise PollError(Reason.INVALID_RESPONSE, "login response has no usable token")
    expires: float | None
    try:
        expires = parse_timestamp(user.get("expires_after")).timestamp()
    except (ValueError, TypeError, OverflowError):
        expires = None
    return token, expires
