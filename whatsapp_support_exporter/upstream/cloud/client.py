"""One attempt on one WhatsApp Business Account through the Graph API.

As the On-Premises client's attempt, it owns everything about itself: one deadline for every
request and page, one classification, one outcome (a :class:`CloudAnswer` or a
:class:`PollError`). Two requests, then the pages of the second:

1. ``GET {graph_url}/{version}/{waba_id}?fields=name,health_status,...``
2. ``GET {graph_url}/{version}/{waba_id}/phone_numbers?fields=...&limit=100``, then each
   ``paging.next`` on the same host only, at most ``MAX_PAGES`` pages.

Every answer's ``X-Business-Use-Case-Usage`` header is read (``usage``), failed ones too: a
rate-limited account says how long it is blocked. The Graph API's behaviour we rely on is
described in ``docs/upstream-api.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.cloud.model import (
    ACCOUNT_FIELDS,
    NUMBER_FIELDS,
    SERIES_PER_ACCOUNT,
    SERIES_PER_ENTITY,
    SERIES_PER_NUMBER,
    PhoneNumber,
    Usage,
    Waba,
    parse_account,
    parse_page,
    parse_usage,
)
from whatsapp_support_exporter.upstream.errors import PollError, Reason
from whatsapp_support_exporter.upstream.http import (
    HEADER_SAFE,
    classify,
    read_capped,
    retry_after_seconds,
    status_error,
)
from whatsapp_support_exporter.upstream.onprem.support import InvalidResponse, load_json
from whatsapp_support_exporter.upstream.onprem.target import SecretFileError

# Pages of phone numbers followed in one attempt; an account with more is a failed poll.
MAX_PAGES = 20
PAGE_SIZE = 100
USAGE_HEADER = "X-Business-Use-Case-Usage"

# Graph error codes (``{"error": {"code": N}}``) and the reason each gives.
_AUTH_CODES = frozenset({190, 10, 102, *range(200, 300)})
_RATE_CODES = frozenset({4, 17, 32, 613, 80007, 80008})
_UNAVAILABLE_CODES = frozenset({1, 2})


def graph_reason(code: int) -> Reason:
    """The poll error reason of a Graph error code."""
    if code in _AUTH_CODES:
        return Reason.AUTH
    if code in _RATE_CODES:
        return Reason.RATE_LIMITED
    if code in _UNAVAILABLE_CODES:
        return Reason.UNAVAILABLE
    return Reason.HTTP


@dataclass(frozen=True)
class _Found:
    """What a Graph error body says: its code, subcode and the field it refused, if named."""

    code: int
    subcode: int | None
    field: str | None


# "(#100) Tried accessing nonexisting field (platform_type) on node type (...)"
_REFUSED_FIELD = re.compile(r"nonexisting field \(([a-z_]{1,64})\)")


def _graph_error_code(body: bytes) -> _Found | None:
    """The code (and subcode, refused field) of a Graph error body, None when it is none."""
    try:
        document = load_json(body)
    except InvalidResponse:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None
    code, subcode = _integer(error.get("code")), _integer(error.get("error_subcode"))
    message = error.get("message")
    named = _REFUSED_FIELD.search(message) if isinstance(message, str) else None
    field = named.group(1) if named else None
    # only a name we asked for is kept: nothing of Graph's own text goes further
    field = field if field in (*NUMBER_FIELDS, HOST_PLATFORM) else None
    return None if code is None else _Found(code, subcode, field)


def _integer(value: object) -> int | None:
    """An error code as Graph writes it (a number; a string of digits is taken too)."""
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        return int(value)
    return None


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    """Scheme, host and port, the default port resolved (``:443`` is the same host)."""
    return url.scheme.lower(), (url.host or "").lower() or None, url.port


def _dropped(fields: tuple[str, ...], drop: str) -> tuple[str, ...]:
    """The fields without ``drop``; ``platform_type`` is asked as ``host_platform`` instead."""
    swap = (HOST_PLATFORM,) if drop == PLATFORM_FIELD else ()
    return tuple(g for f in fields for g in ((*swap,) if f == drop else (f,)))


class GraphError(PollError):
    """A failed request that carried a Graph error code."""

    def __init__(
        self,
        reason: Reason,
        detail: str,
        code: int,
        retry_after: float | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(reason, detail, retry_after)
        self.code = code
        self.field = field  # the field the error says does not exist, one of ours


# Graph's answer to a field the node does not know (or no longer knows) is error 100.
INVALID_PARAMETER = 100
# Of the two messaging-limit fields, the one a version may not know: v24.0 and newer name the
# newer field, older versions only the deprecated one.
DEPRECATED_LIMIT_FIELD = "messaging_limit_tier"
NEWER_LIMIT_FIELD = "whatsapp_business_manager_messaging_limit"
# The list edge may know the platform by this name only.
PLATFORM_FIELD = "platform_type"
HOST_PLATFORM = "host_platform"


@dataclass(frozen=True)
class CloudAnswer:
    """A successful attempt: the account, its numbers, and what was dropped on the way."""

    waba: Waba
    numbers: tuple[PhoneNumber, ...]
    received_at: float
    invalid_fields: tuple[str, ...] = ()
    pages: int = 1
    usage: Usage | None = None  # the last usage header of the attempt


class CloudClient:
    """One account's conversation with the Graph API."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        account: CloudAccount,
        *,
        timeout: float,
        max_response_bytes: int,
        max_series: int | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.account = account
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.max_series = max_series
        self.ssl = ssl_context
        self.clock = clock
        base = URL(account.graph_url.rstrip("/"))
        self._origin = _origin(base)
        self._base_url = base
        self._base = f"{str(base).rstrip('/')}/{account.api_version}/{account.waba_id}"
        # the last usage header of the last attempt (a failed one's too); None if it had none
        self.usage: Usage | None = None
        # the fields asked of each number: all of them, until a version refuses one
        self.number_fields: tuple[str, ...] = NUMBER_FIELDS
        self._tried = 0  # fallbacks tried after an error 100 that named no field

    @property
    def account_url(self) -> str:
        return f"{self._base}?{urlencode({'fields': ','.join(ACCOUNT_FIELDS)})}"

    @property
    def numbers_url(self) -> str:
        query = urlencode({"fields": ",".join(self.number_fields), "limit": PAGE_SIZE})
        return f"{self._base}/phone_numbers?{query}"

    def _without(self, named: str | None) -> bool:
        """After error 100 on the first page: ask again without the field refused. Graph's
        message names it; without a name, the likeliest ways out are tried in turn (without
        the messaging-limit field this version may not know, without the other, the platform
        asked as ``host_platform``, and these together). The client remembers what worked;
        when none did, it asks for every field again. False when nothing is left to try."""
        if named is not None and named != "id" and named in self.number_fields:
            self.number_fields = _dropped(self.number_fields, named)
            return True
        while self._tried < len(self._fallbacks):
            fields = self._fallbacks[self._tried]
            self._tried += 1
            if fields != self.number_fields:
                self.number_fields = fields
                return True
        self.number_fields = NUMBER_FIELDS  # none helped: the error was not about our fields
        return False

    @property
    def _fallbacks(self) -> tuple[tuple[str, ...], ...]:
        major = self.account.api_version.lstrip("v").split(".")[0]
        unknown, other = (
            (DEPRECATED_LIMIT_FIELD, NEWER_LIMIT_FIELD)
            if major.isdigit() and int(major) >= 24
            else (NEWER_LIMIT_FIELD, DEPRECATED_LIMIT_FIELD)
        )
        host = _dropped(NUMBER_FIELDS, PLATFORM_FIELD)
        return (
            _dropped(NUMBER_FIELDS, unknown),
            _dropped(NUMBER_FIELDS, other),
            host,
            _dropped(host, unknown),
            _dropped(host, other),
            _dropped(_dropped(host, unknown), other),
        )

    async def attempt(self) -> CloudAnswer:
        """The account and every page of its numbers within one deadline; PollError if not."""
        self.usage = None
        token = self._token()
        try:
            async with asyncio.timeout(self.timeout):
                return await self._attempt(token)
        except TimeoutError:
            raise PollError(Reason.TIMEOUT, f"no answer within {self.timeout:g}s") from None
        except PollError:
            raise
        except InvalidResponse as err:
            raise PollError(Reason.INVALID_RESPONSE, str(err)) from None
        except (aiohttp.ClientError, OSError, ValueError) as err:
            raise classify(err) from None

    async def _attempt(self, token: str) -> CloudAnswer:
        headers = {"Authorization": f"Bearer {token}"}
        waba, invalid = parse_account(await self._get(self.account_url, headers, "the account"))
        used = SERIES_PER_ACCOUNT + sum(
            SERIES_PER_ENTITY + len(e.error_codes) for e in waba.entities
        )
        invalid_fields = list(invalid)
        numbers: dict[str, PhoneNumber] = {}
        url: str | None = self.numbers_url
        pages = 0
        while url is not None:
            pages += 1
            try:
                body = await self._get(url, headers, f"phone_numbers page {pages}")
            except GraphError as err:
                if pages > 1 or err.code != INVALID_PARAMETER or not self._without(err.field):
                    raise
                url, pages = self.numbers_url, 0  # once more, without the field refused
                continue
            room = None
            if self.max_series is not None:
                room = max(self.max_series - used, 0) // SERIES_PER_NUMBER - len(numbers)
            page = parse_page(body, max_numbers=room)
            invalid_fields += page.invalid_fields
            for number in page.numbers:
                if number.id in numbers:
                    invalid_fields.append("id")
                    continue
                numbers[number.id] = number
            url = page.next_url
            if url is not None:
                if pages >= MAX_PAGES:
                    raise PollError(
                        Reason.INVALID_RESPONSE,
                        f"phone_numbers has more than {MAX_PAGES} pages",
                    )
                url = self._same_host(url)
        return CloudAnswer(
            waba, tuple(numbers.values()), self.clock(), tuple(invalid_fields), pages, self.usage
        )

    def _same_host(self, url: str) -> str:
        """``paging.next`` is followed only to the configured Graph host: the token goes along.

        Graph writes a full URL; a path alone is taken as one on the configured host.
        """
        try:
            parsed = URL(url, encoded=True)
            if not parsed.is_absolute() and url.startswith("/") and not url.startswith("//"):
                return str(self._base_url.join(parsed))
            same = parsed.is_absolute() and _origin(parsed) == self._origin
        except (ValueError, TypeError):
            same = False
        if not same:
            raise PollError(
                Reason.INVALID_RESPONSE, "paging.next points to another host; not followed"
            )
        return url

    def _token(self) -> str:
        """The token, its file read again now; never part of a message."""
        try:
            token = self.account.read_token()
        except SecretFileError as err:
            raise PollError(Reason.AUTH, f"token: {err}") from None
        if not token:
            raise PollError(Reason.AUTH, "no token configured")
        if not HEADER_SAFE.fullmatch(token):
            raise PollError(Reason.AUTH, "the token holds characters a header cannot carry")
        return token

    async def _get(self, url: str, headers: dict[str, str], what: str) -> bytes:
        # no redirects: one could carry the token to another host
        async with self.session.get(
            URL(url, encoded=True), headers=headers, allow_redirects=False, ssl=self.ssl
        ) as resp:
            usage = parse_usage(resp.headers.get(USAGE_HEADER))
            if usage is not None:
                self.usage = usage
            if resp.status >= 300:
                body = b""
                with contextlib.suppress(PollError, aiohttp.ClientError):
                    body = await read_capped(resp, min(self.max_response_bytes, 64 * 1024))
                raise self._error(resp, body, what, usage)
            body = await read_capped(resp, self.max_response_bytes)
        if b'"error"' in body[:64]:  # an error object answered with 200
            found = _graph_error_code(body)
            if found is not None:
                raise self._error(resp, body, what, usage)
        return body

    def _error(
        self, resp: aiohttp.ClientResponse, body: bytes, what: str, usage: Usage | None
    ) -> PollError:
        """A Graph error code decides the reason; without one, the HTTP status does."""
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"), self.clock())
        if usage is not None and usage.regain_seconds > 0:
            retry_after = max(retry_after or 0.0, usage.regain_seconds)
        found = _graph_error_code(body)
        if found is None:
            return status_error(resp.status, retry_after, what)
        sub = f", subcode {found.subcode}" if found.subcode is not None else ""
        reason = graph_reason(found.code)
        return GraphError(
            reason,
            f"{what} answered HTTP {resp.status}, Graph error {found.code}{sub}",
            found.code,
            retry_after if reason in (Reason.RATE_LIMITED, Reason.UNAVAILABLE) else None,
            found.field,
        )
