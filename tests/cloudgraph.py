"""A small fake Graph API for the Cloud tests: one account, numbers over pages, faults on demand.

The simulator's Graph API (``whatsapp_api_simulator``) is the full one; this fake keeps each
test's upstream in a few lines it can change between polls.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "EAAG-test-token-0123456789abcdef"
WABA_ID = "102290129340398"


def number(i: int, **fields: Any) -> dict[str, Any]:
    """A phone number as the edge answers it, every field documented and valid."""
    doc: dict[str, Any] = {
        "id": f"10654035224{i:04d}",
        "display_phone_number": f"+1 555-01{i:02d}",
        "verified_name": f"Shop {i}",
        "quality_rating": "GREEN",
        "status": "CONNECTED",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "whatsapp_business_manager_messaging_limit": "TIER_1K",
        "name_status": "APPROVED",
        "code_verification_status": "VERIFIED",
        "account_mode": "LIVE",
        "last_onboarded_time": "2023-08-22T19:05:34+0000",
        "health_status": {"can_send_message": "AVAILABLE"},
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


class FakeGraph:
    """Serves ``/{version}/{waba}`` and ``/{version}/{waba}/phone_numbers`` with cursors."""

    def __init__(self) -> None:
        self.token = TOKEN
        self.account: dict[str, Any] = {
            "id": WABA_ID,
            "name": "Acme",
            "account_review_status": "APPROVED",
            "business_verification_status": "verified",
            "health_status": {
                "can_send_message": "LIMITED",
                "entities": [
                    {"entity_type": "WABA", "id": WABA_ID, "can_send_message": "AVAILABLE"},
                    {
                        "entity_type": "PHONE_NUMBER",
                        "id": "106540352240001",
                        "can_send_message": "BLOCKED",
                        "errors": [{"error_code": 141002, "error_description": "x"}],
                    },
                ],
            },
        }
        self.numbers = [number(i) for i in range(3)]
        self.page_size = 100
        self.usage: dict[str, Any] | None = None
        self.error: tuple[int, dict[str, Any] | None] | None = None  # (status, body)
        self.endless = False
        self.next_base: str | None = None  # another host for paging.next
        self.refused_fields: set[str] = set()  # asked for on the edge: error 100, as Graph does
        self.requests: list[web.Request] = []
        self.base = ""

    def _headers(self) -> dict[str, str]:
        if self.usage is None:
            return {}
        return {"X-Business-Use-Case-Usage": orjson.dumps({WABA_ID: [self.usage]}).decode()}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        headers = self._headers()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            body = {"error": {"message": "Invalid OAuth access token.", "code": 190}}
            return web.json_response(body, status=401, headers=headers)
        if self.error is not None:
            status, error = self.error
            if error is None:
                return web.Response(status=status, text="<html>busy</html>", headers=headers)
            return web.json_response(error, status=status, headers=headers)
        parts = request.path.strip("/").split("/")
        if len(parts) == 2:
            return web.json_response(self.account, headers=headers)
        asked = set(request.query.get("fields", "").split(","))
        if asked & self.refused_fields:
            body = {"error": {"message": "(#100) Tried accessing nonexisting field", "code": 100}}
            return web.json_response(body, status=400, headers=headers)
        after = int(request.query.get("after", "0"))
        size = min(int(request.query.get("limit", "25")), self.page_size)
        # only the fields asked for, as Graph answers (the platform under either of its names)
        asked |= {"id", "host_platform"} if "platform_type" in asked else {"id"}
        data = [
            {k: v for k, v in n.items() if k in asked}
            for n in copy.deepcopy(self.numbers[after : after + size])
        ]
        doc: dict[str, Any] = {"data": data, "paging": {"cursors": {"after": str(after + size)}}}
        if self.endless or after + size < len(self.numbers):
            query = dict(request.query)
            query["after"] = str(after + size)
            base = self.next_base or self.base
            doc["paging"]["next"] = str(request.url.with_scheme("http").with_query(query)).replace(
                self.base, base, 1
            )
        return web.json_response(doc, headers=headers)


async def serve_graph() -> tuple[FakeGraph, TestServer]:
    """A FakeGraph on a loopback port."""
    fake = FakeGraph()
    app = web.Application()
    app.router.add_get("/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.base = str(server.make_url("")).rstrip("/")
    return fake, server
