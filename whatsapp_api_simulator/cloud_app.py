"""The HTTP side of the simulated Graph API: routes, tokens, paging, usage header, faults.

It serves what the exporter asks of the Cloud API: `GET /<version>/<WABA_ID>?fields=...`,
`GET /<version>/<WABA_ID>/phone_numbers?fields=...&limit=N` with Graph paging, and
`GET /<version>/<PHONE_NUMBER_ID>`, behind `Authorization: Bearer <token>`, with the
`X-Business-Use-Case-Usage` header on every answer, an hourly rate limit, Graph error bodies and
injected faults. The accounts live in `cloud_model.py`; this module is the wire. `cloud.py`
starts it and is the module to import.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from whatsapp_api_simulator.cloud_accounts import (
    every_state_numbers,
    flag_and_restore,
    migration,
    plain_numbers,
    quality_swing,
    unknown_number,
)
from whatsapp_api_simulator.cloud_model import (
    ACCOUNT_FIELDS,
    DEFAULT_ACCOUNT_FIELDS,
    DEFAULT_NUMBER_FIELDS,
    NUMBER_FIELDS,
    Account,
    GraphFault,
    PhoneNumber,
)

__all__ = [
    "AUTH_CODES",
    "RATE_LIMIT_CODES",
    "UNAVAILABLE_CODES",
    "USAGE_HEADER",
    "GraphSimulator",
    "graph_error",
]

USAGE_HEADER = "X-Business-Use-Case-Usage"
AUTH_CODES = (190, 10, 102, *range(200, 300))
RATE_LIMIT_CODES = (4, 17, 32, 613, 80007, 80008)
UNAVAILABLE_CODES = (1, 2)
DEFAULT_PAGE_SIZE = 25  # Graph's page size when `limit` is not given
APP_ID = "334167369042513"
_MESSAGES = {
    1: "An unknown error occurred",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached",
    10: "(#10) Application does not have permission for this action",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    100: "(#100) Unsupported get request.",
    102: "Session key invalid or no longer valid",
    190: "Invalid OAuth access token - Cannot parse access token",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80007: "(#80007) Rate limit issues: too many calls to this WhatsApp Business Account.",
    80008: "(#80008) There have been too many calls to this WhatsApp Business Account.",
}
_JSON = "application/json"
_CHUNK = 64 * 1024
_HANG_POLL = 0.05


def graph_error(code: int, subcode: int | None = None, message: str | None = None) -> web.Response:
    """A Graph error answer: `{"error": {...}}` with the HTTP status Graph gives that code."""
    if code in (190, 102):
        status = 401
    elif code == 10 or 200 <= code <= 299:
        status = 403
    elif code in UNAVAILABLE_CODES:
        status = 500 if code == 1 else 503
    else:
        status = 400
    error: dict[str, Any] = {
        "message": message or _MESSAGES.get(code, f"(#{code}) Simulated error"),
        "type": "GraphMethodException" if code == 100 else "OAuthException",
        "code": code,
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if code in UNAVAILABLE_CODES or code in RATE_LIMIT_CODES:
        error["is_transient"] = True
    error["fbtrace_id"] = "A" + secrets.token_urlsafe(15)
    return web.Response(status=status, body=orjson.dumps({"error": error}), content_type=_JSON)


def _fields(raw: str | None, default: Iterable[str]) -> list[str]:
    """The names in `fields=`, without Graph's `{...}` sub-selections and `.limit()` modifiers."""
    if raw is None:
        return list(default)
    names: list[str] = []
    current: list[str] = []
    depth = 0
    for char in raw + ",":
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            name = "".join(current).split("{")[0].split(".")[0].strip()
            if name:
                names.append(name)
            current = []
            continue
        if depth == 0 and char != "}":
            current.append(char)
    return names


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"cursor:{index}".encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, index = text.partition(":")
    return int(index) if prefix == "cursor" and index.isdigit() else None


class GraphSimulator:
    """Many WhatsApp Business Accounts behind one aiohttp app, one set of accepted tokens."""

    def __init__(
        self,
        *,
        token: str | None = None,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        strict_fields: bool = False,
    ) -> None:
        self.token = token or secrets.token_urlsafe(32)  # the newest accepted token
        self.tokens: set[str] = {self.token}
        self.now: Callable[[], float] = clock
        self.seed = seed
        self.strict_fields = strict_fields  # unknown field names: error 100 instead of ignored
        self.faults: list[GraphFault] = []  # for every account, after the account's own
        # "total", "unauthorized" (190 for the token), "unknown" (no such id).
        self.requests: collections.Counter[str] = collections.Counter()
        self.log: collections.deque[str] = collections.deque(maxlen=1000)  # paths with queries
        self._accounts: dict[str, Account] = {}
        self._serial = 0
        self._closing = False

    # ----------------------------------------------------------------- accounts

    def add_account(
        self,
        name: str = "Simulated Business",
        *,
        label: str | None = None,
        numbers: int | list[PhoneNumber] = 0,
        every_state: bool = False,
        unknown_values: bool = False,
        rate_limit: int = 200,
    ) -> Account:
        """A new account with fresh ids: `numbers` drawn from the seed (or given), plus the
        eleven every-state numbers and one with unknown enum values, when asked."""
        serial = self._serial
        self._serial += 1
        first = 106_540_000_000_000 + serial * 100_000
        if isinstance(numbers, int):
            numbers = plain_numbers(first, numbers, name, self.seed)
        if every_state:
            numbers = [*numbers, *every_state_numbers(first + 50_000, name, seed=self.seed)]
        if unknown_values:
            numbers = [*numbers, unknown_number(str(first + 99_999), name)]
        account = Account(
            str(102_290_129_000_000 + serial),
            name,
            label=label,
            business_id=str(2_729_063_490_000_000 + serial),
            app_id=APP_ID,
            numbers=numbers,
            rate_limit=rate_limit,
        )
        self._accounts[account.waba_id] = account
        return account

    def add_accounts(self, count: int, numbers: int = 10, prefix: str = "acct") -> list[Account]:
        """`count` accounts of `numbers` numbers each (benchmarks), labelled `<prefix>-<i>`
        (*i* counting on from the accounts already labelled so)."""
        first = sum(1 for a in self._accounts.values() if a.label.startswith(f"{prefix}-"))
        return [
            self.add_account(f"Business {i}", label=f"{prefix}-{i}", numbers=numbers)
            for i in range(first, first + count)
        ]

    def add_demo_account(self, label: str = "demo", period: float = 600.0) -> Account:
        """The demo's account: every state of every field, a number still `ON_PREMISE`, and
        three that move with the clock: one migrates to `CLOUD_API` after `period / 2`, one's
        quality drops GREEN→YELLOW→RED and recovers, one is FLAGGED then CONNECTED again, each
        `period`."""
        start = self.now()
        account = self.add_account("Acme Support", label=label, every_state=True)
        first = int(account.numbers[-1].id) + 1
        moving = plain_numbers(first, 3, account.name, self.seed)
        for number in moving:
            number.quality_rating, number.status = "GREEN", "CONNECTED"
            number.platform_type = "CLOUD_API"
        moving[0].script = migration(start, period / 2)
        moving[1].script = quality_swing(start, period)
        moving[2].script = flag_and_restore(start, period)
        account.numbers.extend(moving)
        account.tick(start)
        return account

    def account(self, which: str) -> Account:
        """An account by WABA id or label (KeyError if unknown)."""
        account = self._accounts.get(which)
        if account is not None:
            return account
        for account in self._accounts.values():
            if account.label == which:
                return account
        raise KeyError(which)

    @property
    def accounts(self) -> dict[str, Account]:
        """Every account by WABA id, in the order they were added."""
        return self._accounts

    @property
    def waba_ids(self) -> list[str]:
        return list(self._accounts)

    def remove_account(self, waba_id: str) -> None:
        """The account disappears: its id answers error 100 from now on."""
        del self._accounts[waba_id]

    # ----------------------------------------------------------------- control

    def rotate_token(self, *, keep_old: bool = False) -> str:
        """Issue a new token; the old ones stop working unless `keep_old`."""
        self.token = secrets.token_urlsafe(32)
        if not keep_old:
            self.tokens.clear()
        self.tokens.add(self.token)
        return self.token

    def inject(self, waba_id: str | None = None, **fault: Any) -> GraphFault:
        """Add a `GraphFault` (keyword arguments as its fields) for one account, or all (None)."""
        graph_fault = GraphFault(**fault)
        if waba_id is None:
            self.faults.append(graph_fault)
        else:
            self.account(waba_id).faults.append(graph_fault)
        return graph_fault

    def clear_faults(self) -> None:
        self.faults.clear()
        for account in self._accounts.values():
            account.faults.clear()

    # ----------------------------------------------------------------- web app

    def app(self) -> web.Application:
        """A standalone app; unknown paths answer Graph's error 100."""
        app = web.Application()
        self.install(app)
        app.router.add_route("GET", "/{tail:.*}", self._unknown_path)
        return app

    def install(self, app: web.Application) -> None:
        """Add the Graph routes to an app (the On-Premises simulator's, say): no path overlaps."""
        version, node = "{version:v[0-9]+\\.[0-9]+}", "{node:[0-9]+}"
        app.router.add_get(f"/{version}/{node}", self._node)
        app.router.add_get(f"/{version}/{node}/phone_numbers", self._phone_numbers)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing = True

    async def _unknown_path(self, request: web.Request) -> web.Response:
        self.requests["unknown"] += 1
        return graph_error(100, message="Unknown path components: " + request.path)

    async def _node(self, request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        if node in self._accounts:
            return await self._serve(request, self._accounts[node], "account")
        owner = next((a for a in self._accounts.values() for n in a.numbers if n.id == node), None)
        return await self._serve(request, owner, "phone_number")

    async def _phone_numbers(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(
            request, self._accounts.get(request.match_info["node"]), "phone_numbers"
        )

    def _authorized(self, request: web.Request, account: Account | None) -> bool:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        tokens = (
            account.tokens if account is not None and account.tokens is not None else self.tokens
        )
        given = credential.strip().encode()
        return scheme.lower() == "bearer" and any(
            hmac.compare_digest(given, t.encode()) for t in tokens
        )

    def _take_fault(self, account: Account, endpoint: str) -> GraphFault | None:
        """The first fault due (the account's before everyone's), used up after `count`."""
        for faults in (account.faults, self.faults):
            for fault in faults:
                if fault.matches(endpoint):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            faults.remove(fault)
                    return fault
        return None

    async def _serve(
        self, request: web.Request, account: Account | None, endpoint: str
    ) -> web.StreamResponse:
        """Token, id, usage, faults, rate limit (in that order), then the answer."""
        self.requests["total"] += 1
        self.log.append(request.path_qs)
        if not self._authorized(request, account):
            self.requests["unauthorized"] += 1
            return graph_error(190)
        if account is None:
            self.requests["unknown"] += 1
            node = request.match_info["node"]
            return graph_error(
                100,
                33,
                f"Unsupported get request. Object with ID '{node}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
            )
        now = self.now()
        account.requests[endpoint] += 1
        allowed = account.count_call(now)
        fault = self._take_fault(account, endpoint)
        regain = 0
        response: web.StreamResponse
        if fault is not None and fault.latency > 0:
            await asyncio.sleep(fault.latency)
        if fault is not None and fault.answers:
            if fault.error in RATE_LIMIT_CODES:
                regain = fault.regain_minutes
            response = await self._fault(request, account, fault)
        elif not allowed:
            account.requests["rejected"] += 1
            response = graph_error(account.rate_limit_code)
        else:
            response = self._answer(request, account, endpoint)
        if not response.prepared:
            response.headers[USAGE_HEADER] = orjson.dumps(account.usage(now, regain)).decode()
            response.headers["facebook-api-version"] = request.match_info["version"]
        return response

    async def _fault(
        self, request: web.Request, account: Account, fault: GraphFault
    ) -> web.StreamResponse:
        if fault.hang:
            while not self._closing:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                await asyncio.sleep(_HANG_POLL)
            return graph_error(2)
        if fault.error is not None:
            response = graph_error(fault.error, fault.subcode)
            if fault.status is not None:
                response.set_status(fault.status)
            return response
        if fault.status is not None:
            return web.Response(status=fault.status, text="Simulated upstream fault")
        if fault.body is not None:
            return web.Response(body=fault.body, content_type=_JSON)
        return await self._stream(request, account, fault.body_size or 0)

    async def _stream(
        self, request: web.Request, account: Account, size: int
    ) -> web.StreamResponse:
        """A 200 body of `size` bytes in 64 KiB chunks, never held in memory whole."""
        response = web.StreamResponse()
        response.content_type = _JSON
        response.content_length = size
        response.headers[USAGE_HEADER] = orjson.dumps(account.usage(self.now())).decode()
        await response.prepare(request)
        prefix = b'{"data": [], "padding": "'[:size]
        try:
            await response.write(prefix)
            remaining = size - len(prefix)
            while remaining > 0:
                n = min(remaining, _CHUNK)
                await response.write(b" " * n)
                remaining -= n
            await response.write_eof()
        except ConnectionError:
            pass  # The client stopped reading, as a size cap should make it do.
        return response

    def _unknown_fields(self, names: list[str], known: frozenset[str]) -> web.Response | None:
        unknown = [n for n in names if n not in known]
        if self.strict_fields and unknown:
            return graph_error(
                100, message=f"(#100) Tried accessing nonexisting field ({unknown[0]})"
            )
        return None

    def _answer(self, request: web.Request, account: Account, endpoint: str) -> web.Response:
        query = request.query
        if endpoint == "account":
            names = _fields(query.get("fields"), DEFAULT_ACCOUNT_FIELDS)
            refused = self._unknown_fields(names, ACCOUNT_FIELDS)
            return refused or _json(account.document(names))
        names = _fields(query.get("fields"), DEFAULT_NUMBER_FIELDS)
        refused = self._unknown_fields(names, NUMBER_FIELDS)
        if refused is not None:
            return refused
        if endpoint == "phone_number":
            return _json(account.number(request.match_info["node"]).document(names, account))
        return self._page(request, account, names)

    def _page(self, request: web.Request, account: Account, names: list[str]) -> web.Response:
        """One page of the `phone_numbers` edge, with Graph's cursors and `next`/`previous`."""
        query = request.query
        try:
            size = max(1, int(query.get("limit", DEFAULT_PAGE_SIZE)))
        except ValueError:
            size = DEFAULT_PAGE_SIZE
        if account.page_size_cap is not None:
            size = min(size, account.page_size_cap)
        offset = 0
        if "after" in query or "before" in query:
            index = _uncursor(query.get("after") or query.get("before") or "")
            if index is None:
                return graph_error(100, message="(#100) Invalid cursor")
            offset = index + 1 if "after" in query else max(0, index - size)
        numbers, total = account.numbers, len(account.numbers)
        if account.endless_pages and total:
            picked = [numbers[(offset + i) % total] for i in range(size)]
        else:
            picked = numbers[offset : offset + size]
        body: dict[str, Any] = {"data": [n.document(names, account) for n in picked]}
        if picked:
            last = offset + len(picked) - 1
            paging: dict[str, Any] = {
                "cursors": {"before": _cursor(offset), "after": _cursor(last)}
            }
            url = request.url
            if account.next_host is not None:
                url = url.with_host(account.next_host)
            if account.endless_pages or last + 1 < total:
                paging["next"] = str(
                    url.update_query(after=_cursor(last)).without_query_params("before")
                )
            if offset > 0:
                paging["previous"] = str(
                    url.update_query(before=_cursor(offset)).without_query_params("after")
                )
            body["paging"] = paging
        return _json(body)


def _json(document: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(document), content_type=_JSON)
