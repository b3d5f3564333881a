"""A fake WhatsApp Business API On-Premises client, for the demo, the tests and the benchmarks.

It serves the endpoints the exporter talks to (`/v1/support`, `/v1/health`, `/v1/users/login`,
`/v1/account/shards`) for many simulated deployments at once, with the authentication, rate
limit, error envelopes and response shapes described in `docs/upstream-api.md`.
Values move with the clock (free space drains, `socket_conn` flaps) so a dashboard demo looks
alive, yet everything is derived from `clock()` and `seed`, so tests are deterministic.

This is the module to import: `Simulator` holds the deployments and serves them (its `app()`).
A deployment (`Instance`, its `Container`s, failovers, broken clusters) lives in
`onprem_model.py`, what it answers in `onprem_documents.py`, the command line in `cli.py`;
the tests' hostile bodies and raw TCP answers live with the tests. `docs/simulator.md` has the
tour. Run it alone with `python -m whatsapp_api_simulator --single 2 --multiconnect 1`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from whatsapp_api_simulator.onprem_documents import (
    health_payload,
    shards_payload,
    support_with_new_keys,
    with_meta,
)
from whatsapp_api_simulator.onprem_model import (
    CONTROL_SHARD,
    DEFAULT_VERSION,
    TOPOLOGIES,
    VALID_SHARD_COUNTS,
    Faults,
    Instance,
)

__all__ = ["Simulator"]

_CHUNK = 64 * 1024
_PADDING_CHUNK = b" " * _CHUNK
_STREAM_PREFIX = b'{"support": {"padding": "'
_HANG_POLL = 0.05
_JSON = "application/json"


class Simulator:
    """Many simulated deployments behind one aiohttp app, sharing one token store."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        username: str = "admin",
        password: str | None = None,
        token_lifetime: float = 7 * 86400,
        rate: float = 20.0,
        burst: int = 60,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env`: variables every container's `env` list shows besides the usual ones and its
        API key; a test plants secrets there to prove the exporter never passes them on."""
        self.api_key = api_key
        self.username = username
        self.password = password
        self.token_lifetime = token_lifetime
        self.rate = rate
        self.burst = burst
        self.now: Callable[[], float] = clock
        self.seed = seed
        self.env = dict(env or {})
        self.tokens_issued = 0
        self.tokens: dict[str, float] = {}  # token -> expiry (clock time)
        self._instances: dict[str, Instance] = {}
        self._first: Instance | None = None
        self._closing = False

    # ----------------------------------------------------------------- deployments

    def add_instance(
        self,
        name: str,
        topology: str = "single",
        *,
        masters: int = 2,
        coreapps: int = 2,
        shards: int = 1,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> Instance:
        """Create a deployment; the first one added is also served at the root path.

        `api_key`, `username` and `password` override the simulator's for this deployment
        only; one that has any of them keeps its own login tokens.
        """
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, not {topology!r}")
        if name in self._instances:
            raise ValueError(f"instance {name!r} already exists")
        if not name or "/" in name:
            raise ValueError(f"invalid instance name {name!r}")
        key = api_key if api_key is not None else self.api_key
        key_env = {"WA_API_KEY": key} if key else {}
        inst = Instance(
            name,
            topology,
            seed=self.seed,
            started=self.now(),
            rate=self.rate,
            burst=self.burst,
            env={**key_env, **self.env},
        )
        inst.api_key, inst.username, inst.password = api_key, username, password
        if api_key is not None or username is not None or password is not None:
            inst.tokens = {}
        if topology == "single":
            inst.add_container("coreapp", hostname=name)
        else:
            if masters < 1 or coreapps < 1:
                raise ValueError("HA and multiconnect need at least one master and one coreapp")
            if topology == "multiconnect":
                if shards not in VALID_SHARD_COUNTS:
                    raise ValueError(f"shards must be one of {VALID_SHARD_COUNTS}, not {shards}")
                if coreapps < shards:
                    raise ValueError(f"{shards} shards need at least {shards} coreapps")
                inst.shard_count = shards
            for i in range(masters):
                role = "primary_master" if i == 0 else "secondary_master"
                owned = [list(CONTROL_SHARD)] if i == 0 and topology == "multiconnect" else []
                inst.add_container(role, owned)
            for i in range(coreapps):
                if topology == "ha":
                    owned = [list(CONTROL_SHARD), [0, 0]] if i == 0 else []
                else:
                    owned = [[i, i]] if i < shards else []
                inst.add_container("coreapp", owned)
        self._instances[name] = inst
        if self._first is None:
            self._first = inst
        return inst

    def instance(self, name: str) -> Instance:
        """Look up a deployment by name (KeyError if unknown)."""
        return self._instances[name]

    @property
    def instances(self) -> dict[str, Instance]:
        """All deployments by name, in the order they were added."""
        return self._instances

    def url(self, base: str, name: str) -> str:
        """The exporter's target URL for a deployment; the exporter appends `/v1/support`."""
        return f"{base.rstrip('/')}/{name}"

    # ----------------------------------------------------------------- web app

    def app(self) -> web.Application:
        """The aiohttp application serving every deployment under `/{name}` (first also at /)."""
        app = web.Application()
        routes = [
            ("GET", "/v1/support", self._support),
            ("GET", "/v1/health", self._health),
            ("GET", "/v1/account/shards", self._shards),
            ("POST", "/v1/users/login", self._login_route),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/{name}" + path, handler)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        """Release hanging handlers so the server can stop without waiting its timeout."""
        self._closing = True

    def _error(
        self,
        inst: Instance | None,
        status: int,
        code: int,
        title: str,
        details: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        body: dict[str, Any] = {"errors": [{"code": code, "title": title, "details": details}]}
        if inst is None:
            body["meta"] = {"api_status": "stable", "version": DEFAULT_VERSION}
        else:
            with_meta(inst, body)
        return web.Response(
            status=status, body=orjson.dumps(body), content_type=_JSON, headers=headers
        )

    def _resolve(self, request: web.Request) -> Instance | None:
        name = request.match_info.get("name")
        if name is None:
            return self._first
        return self._instances.get(name)

    async def _hang(self, request: web.Request) -> None:
        """Wait until the client gives up (or the server stops): a stuck upstream."""
        while not self._closing:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(_HANG_POLL)

    async def _faults(
        self, request: web.Request, inst: Instance, faults: Faults
    ) -> web.StreamResponse | None:
        """Apply one set of faults; a response means the request ends here."""
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        if faults.hang:
            await self._hang(request)
            return self._error(inst, 503, 1011, "Service not ready", "Simulator stopping")
        if faults.status is not None:
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else None
            if faults.status == 503:
                return self._error(inst, 503, 1011, "Service not ready", "Simulated fault", headers)
            return self._error(
                inst, faults.status, 1014, "Internal error", "Simulated fault", headers
            )
        if faults.missing:
            return self._error(inst, 404, 1006, "Resource not found", "Unknown path")
        if faults.body is not None:
            return web.Response(body=faults.body, content_type=_JSON)
        if faults.body_size is not None:
            return await self._stream(request, faults.body_size)
        return None

    async def _stream(self, request: web.Request, size: int) -> web.StreamResponse:
        """A 200 body of `size` bytes written in 64 KiB chunks, never held in memory whole."""
        response = web.StreamResponse()
        response.content_type = _JSON
        response.content_length = size
        await response.prepare(request)
        try:
            prefix = _STREAM_PREFIX[:size]
            await response.write(prefix)
            remaining = size - len(prefix)
            while remaining > 0:
                n = min(remaining, _CHUNK)
                await response.write(_PADDING_CHUNK if n == _CHUNK else _PADDING_CHUNK[:n])
                remaining -= n
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # The client stopped reading, as a size cap should make it do.
        return response

    async def _drip(
        self, request: web.Request, body: bytes, interval: float, headers: dict[str, str]
    ) -> web.StreamResponse:
        """A 200 with the real body, one byte every `interval` seconds: a slow upstream."""
        response = web.StreamResponse(headers=headers)
        response.content_type = _JSON
        response.content_length = len(body)
        await response.prepare(request)
        try:
            for i in range(len(body)):
                if self._closing:
                    return response
                await response.write(body[i : i + 1])
                await asyncio.sleep(interval)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # The client gave up, as its deadline should make it do.
        return response

    def _authorized(self, request: web.Request, inst: Instance, *, allow_api_key: bool) -> bool:
        """Apikey (when configured and allowed) or an unexpired Bearer token of this store."""
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        scheme = scheme.lower()
        credential = credential.strip()
        if scheme == "apikey":
            api_key = inst.api_key if inst.api_key is not None else self.api_key
            return (
                allow_api_key
                and api_key is not None
                and hmac.compare_digest(credential.encode(), api_key.encode())
            )
        if scheme == "bearer":
            tokens = inst.tokens if inst.tokens is not None else self.tokens
            expiry = tokens.get(credential)
            if expiry is None:
                return False
            if expiry <= self.now():
                del tokens[credential]
                return False
            return True
        return False

    async def _serve(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        """Resolve, count, faults, rate limit, auth (in that order), then answer."""
        inst = self._resolve(request)
        if inst is None:
            return self._error(None, 404, 1006, "Resource not found", "Unknown instance")
        inst.requests[endpoint] += 1
        if "Cookie" in request.headers:
            inst.cookies_received += 1
        now = self.now()
        inst.tick(now)
        own = inst.endpoint_faults.get(endpoint)
        response = await self._faults(request, inst, inst.faults)
        if response is None and own is not None:
            response = await self._faults(request, inst, own)
        if response is None:
            if not inst.take_token(now):
                inst.requests["rejected"] += 1
                response = self._error(inst, 429, 1015, "Too many requests", "Rate limit hit")
            elif endpoint == "login":
                response = self._login(request, inst, own)
            else:
                allow_api_key = not (
                    endpoint == "support"
                    and (inst.faults.reject_api_key or (own is not None and own.reject_api_key))
                )
                if not self._authorized(request, inst, allow_api_key=allow_api_key):
                    response = self._error(inst, 401, 1005, "Access denied", "Invalid credentials")
        headers: dict[str, str] = {}
        if inst.faults.set_cookie or (own is not None and own.set_cookie):
            headers["Set-Cookie"] = f"wa_session={secrets.token_hex(8)}; Path=/"
        if response is None:
            body = self._answer(inst, endpoint, own, now)
            drip = inst.faults.drip or (own.drip if own is not None else 0.0)
            if drip > 0:
                return await self._drip(request, body, drip, headers)
            response = web.Response(body=body, content_type=_JSON)
        if headers and not response.prepared:  # a streamed fault has sent its headers
            response.headers.update(headers)
        return response

    def _answer(self, inst: Instance, endpoint: str, own: Faults | None, now: float) -> bytes:
        if endpoint == "support":
            extra = inst.faults.new_free_space_keys or (own.new_free_space_keys if own else 0)
            if extra:
                return support_with_new_keys(inst, now, extra)
            return inst.support_body(now)
        if endpoint == "health":
            return orjson.dumps(health_payload(inst))
        return orjson.dumps(shards_payload(inst))

    async def _support(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "support")

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "health")

    async def _shards(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "shards")

    async def _login_route(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "login")

    def _login(self, request: web.Request, inst: Instance, own: Faults | None) -> web.Response:
        if not self._check_basic(request.headers.get("Authorization", ""), inst):
            return self._error(inst, 401, 1005, "Access denied", "Invalid credentials")
        token = inst.faults.login_token or (own.login_token if own else None)
        token = token or secrets.token_urlsafe(32)
        expiry = self.now() + self.token_lifetime
        (inst.tokens if inst.tokens is not None else self.tokens)[token] = expiry
        self.tokens_issued += 1
        expires_after = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")
        body = with_meta(inst, {"users": [{"token": token, "expires_after": expires_after}]})
        return web.Response(body=orjson.dumps(body), content_type=_JSON)

    def _check_basic(self, header: str, inst: Instance) -> bool:
        """Basic credentials match; logins are disabled when no password is configured."""
        password = inst.password if inst.password is not None else self.password
        username = inst.username if inst.username is not None else self.username
        if password is None:
            return False
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, given = decoded.partition(":")
        return bool(sep) and hmac.compare_digest(
            f"{user}:{given}".encode(), f"{username}:{password}".encode()
        )
