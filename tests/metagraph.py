"""An independent fake of the Graph API, written from Meta's documentation, not from the client.

It answers as real Graph answers look: only the fields asked for (plus ``id``), a field without
a value left out, opaque ``after`` cursors, ``paging.next`` as a full URL carrying every query
parameter of the request, the ``X-Business-Use-Case-Usage`` header keyed by business id, and
``{"error": {...}}`` bodies with the HTTP status Graph uses. A test changes ``numbers``,
``account`` or ``fault`` between polls; ``requests`` records what the exporter asked.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

WABA = "104996122399160"
BUSINESS = "2729063490586005"
TOKEN = "EAAJBmetagraph-token-one-7f3e9a"
ROTATED = "EAAJBmetagraph-token-two-0c41d8"

Fault = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


@dataclass
class Seen:
    """One request as the fake received it."""

    path: str
    query: dict[str, str]
    authorization: str


def phone(i: int, **fields: Any) -> dict[str, Any]:
    """A number as Meta's phone-number reference shows one; ``None`` leaves a field out."""
    doc: dict[str, Any] = {
        "id": f"1065403522{i:05d}",
        "display_phone_number": f"+1 631-555-{i:04d}",
        "verified_name": f"Store {i}",
        "quality_rating": "GREEN",
        "status": "CONNECTED",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "whatsapp_business_manager_messaging_limit": "TIER_2K",
        "name_status": "APPROVED",
        "code_verification_status": "VERIFIED",
        "account_mode": "LIVE",
        "last_onboarded_time": "2024-03-01T08:30:00+0000",
        "health_status": {
            "can_send_message": "AVAILABLE",
            "entities": [
                {
                    "entity_type": "PHONE_NUMBER",
                    "id": f"1065403522{i:05d}",
                    "can_send_message": "AVAILABLE",
                }
            ],
        },
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def graph_error(code: int, subcode: int | None = None, kind: str = "OAuthException") -> bytes:
    """An error body as Graph writes one."""
    error: dict[str, Any] = {
        "message": f"(#{code}) an error",
        "type": kind,
        "code": code,
        "fbtrace_id": "AbCdEfGhIjK",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return orjson.dumps({"error": error})


def usage_header(call_count: int, cputime: int = 1, total_time: int = 1, regain: int = 0) -> str:
    """``X-Business-Use-Case-Usage`` as Graph sends it: JSON keyed by business id."""
    entry = {
        "type": "whatsapp_business_management",
        "call_count": call_count,
        "total_cputime": cputime,
        "total_time": total_time,
        "estimated_time_to_regain_access": regain,
    }
    return orjson.dumps({BUSINESS: [entry]}).decode()


class MetaGraph:
    """The account ``WABA`` and its numbers; tokens in ``tokens`` are accepted."""

    def __init__(self) -> None:
        self.tokens = {TOKEN}
        self.account: dict[str, Any] = {
            "id": WABA,
            "name": "Harbour Foods",
            "account_review_status": "APPROVED",
            "business_verification_status": "verified",
            "health_status": {
                "can_send_message": "BLOCKED",
                "entities": [
                    {"entity_type": "WABA", "id": WABA, "can_send_message": "AVAILABLE"},
                    {
                        "entity_type": "BUSINESS",
                        "id": BUSINESS,
                        "can_send_message": "BLOCKED",
                        "errors": [
                            {
                                "error_code": 141006,
                                "error_description": "There is an error with the payment method.",
                                "possible_solution": "Add a valid payment method.",
                            }
                        ],
                    },
                ],
            },
        }
        self.numbers: list[dict[str, Any]] = [phone(1)]
        self.usage: str | None = usage_header(12)
        self.fault: Fault | None = None
        self.endless = False
        self.public_base: str | None = None  # the origin written into paging.next
        self.refused: set[str] = set()  # number fields this "version" does not know: error 100
        self.name_refused = True  # the error's message names the field, as Graph's does
        self.content_type = "application/json"  # older Graph versions said text/javascript
        self.requests: list[Seen] = []
        self.base = ""

    def _headers(self) -> dict[str, str]:
        return {"X-Business-Use-Case-Usage": self.usage} if self.usage is not None else {}

    def _json(self, doc: Any, status: int = 200) -> web.Response:
        return web.Response(
            body=orjson.dumps(doc),
            status=status,
            content_type=self.content_type,
            headers=self._headers(),
        )

    def _error(self, status: int, code: int, subcode: int | None = None) -> web.Response:
        return web.Response(
            body=graph_error(code, subcode),
            status=status,
            content_type="application/json",
            headers={**self._headers(), "WWW-Authenticate": 'OAuth "Facebook Platform"'},
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.requests.append(Seen(request.path, dict(request.query), auth))
        if self.fault is not None:
            answer = await self.fault(request)
            if answer is not None:
                return answer
        if auth.removeprefix("Bearer ") not in self.tokens:
            return self._error(401, 190, 463)
        parts = request.path.strip("/").split("/")
        if len(parts) < 2 or parts[1] != WABA:
            return self._error(400, 100, 33)
        asked = {f for f in request.query.get("fields", "").split(",") if f} | {"id"}
        if len(parts) == 2:
            return self._json({k: v for k, v in self.account.items() if k in asked})
        refused = sorted(asked & self.refused)
        if refused:
            body = graph_error(100)
            if self.name_refused:  # as Graph words it
                message = (
                    f"(#100) Tried accessing nonexisting field ({refused[0]}) on node type"
                    " (WhatsAppBusinessPhoneNumber)"
                )
                body = orjson.dumps({"error": {**orjson.loads(body)["error"], "message": message}})
            return web.Response(body=body, status=400, content_type="application/json")
        limit = int(request.query.get("limit", "25"))
        cursor = request.query.get("after")
        start = int(base64.urlsafe_b64decode(cursor).decode()) if cursor else 0
        chunk = self.numbers[start : start + limit]
        data = [{k: v for k, v in n.items() if k in asked} for n in chunk]
        # the list edge names the platform host_platform when asked for platform_type
        for entry, number in zip(data, chunk, strict=True):
            if "host_platform" in number and "platform_type" in asked:
                entry["host_platform"] = number["host_platform"]
        after = base64.urlsafe_b64encode(str(start + len(chunk)).encode()).decode()
        before = base64.urlsafe_b64encode(str(start).encode()).decode()
        doc: dict[str, Any] = {
            "data": data,
            "paging": {"cursors": {"before": before, "after": after}},
        }
        if self.endless or start + len(chunk) < len(self.numbers):
            query = {**request.query, "after": after}
            origin = self.public_base or self.base
            doc["paging"]["next"] = str(request.url.with_query(query)).replace(self.base, origin, 1)
        return self._json(doc)


async def serve_meta_graph() -> tuple[MetaGraph, TestServer]:
    fake = MetaGraph()
    app = web.Application()
    app.router.add_get("/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.base = str(server.make_url("")).rstrip("/")
    return fake, server
