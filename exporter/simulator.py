"""A fake WhatsApp Business API On-Premises client, for the demo, the tests and the benchmarks.

It serves the endpoints the exporter talks to (`/v1/support`, `/v1/health`, `/v1/users/login`,
`/v1/account/shards`) for many simulated deployments at once, with the authentication, rate
limit, error envelopes and response shapes described in `shared/reference/whatsapp-api.md`.
Values move with the clock (free space drains, `socket_conn` flaps) so a dashboard demo looks
alive, yet everything is derived from `clock()` and `seed`, so tests are deterministic.

Run it alone with `python -m exporter.simulator --single 2 --multiconnect 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import hmac
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "FAKE_DB_PASSWORD",
    "FAKE_ENV_API_KEY",
    "TOPOLOGIES",
    "VALID_SHARD_COUNTS",
    "Container",
    "Faults",
    "Instance",
    "Simulator",
    "main",
]

TOPOLOGIES = ("single", "ha", "multiconnect")
VALID_SHARD_COUNTS = (1, 2, 4, 8, 16, 32)
DEFAULT_VERSION = "v2.53.2"
# Secrets planted in every container's `env`, so tests can prove they never leave the exporter.
FAKE_DB_PASSWORD = "hunter2-secret"  # noqa: S105 - a planted fake, not a credential
FAKE_ENV_API_KEY = "sim-env-api-key-5f2b9c0e7d41a8"
# What a filesystem without practical limit reports (documented value, about 2**63).
UNLIMITED_FREE_SPACE = 9223372036853727000
_GB = 1_000_000_000
_CHUNK = 64 * 1024
_PADDING_CHUNK = b" " * _CHUNK
_STREAM_PREFIX = b'{"support": {"padding": "'
_HANG_POLL = 0.05
_JSON = "application/json"


@dataclass
class Faults:
    """Switches a test flips to make an instance misbehave. All off by default."""

    latency: float = 0.0
    hang: bool = False
    status: int | None = None
    retry_after: str | None = None
    body: bytes | None = None
    body_size: int | None = None
    reject_api_key: bool = False


@dataclass
class Container:
    """One container of a deployment; tests mutate the list of them to simulate churn."""

    hostname: str
    container_id: str
    role: str
    shards: list[list[int]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The `<hostname>:<container-id>` key used by HA/multiconnect responses."""
        return f"{self.hostname}:{self.container_id}"


@dataclass(frozen=True)
class _Traits:
    """Per-container constants drawn once from the seed; the moving values derive from them."""

    data_base: int
    data_drain: int  # bytes per second
    logs_base: int
    logs_drain: int
    flap_period: int
    flap_phase: int
    registration_id: int


class Instance:
    """One simulated deployment: a single instance, an HA cluster or a multiconnect cluster."""

    def __init__(
        self,
        name: str,
        topology: str,
        *,
        seed: int,
        started: float,
        rate: float,
        burst: int,
        api_key: str | None,
    ) -> None:
        self.name = name
        self.topology = topology
        self.faults = Faults()
        self.payload: dict[str, Any] | None = None
        self.requests: collections.Counter[str] = collections.Counter()
        self.containers: list[Container] = []
        # Attributes tests may set.
        self.registered = True
        self.started = started
        self.expires_at = started + 20 * 86400
        self.version = DEFAULT_VERSION
        self.socket_conn: str | None = None
        self.shard_count = 1
        self._seed = seed
        self._rng = random.Random(f"{seed}:{name}")
        self._phone = f"+1555010{self._rng.randrange(10_000):04d}"
        self._env_api_key = api_key or FAKE_ENV_API_KEY
        self._traits: dict[str, _Traits] = {}
        self._cache_key: tuple[Any, ...] | None = None
        self._cache_body = b""
        # Token bucket: refilled lazily from the clock at each request.
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._bucket_time = started

    @property
    def multi_connect(self) -> bool:
        """Whether responses say `multi_connect: true` (only for the multiconnect topology)."""
        return self.topology == "multiconnect"

    def new_container_id(self) -> str:
        """A fresh 12-hex-digit id like Docker's short ids, deterministic per seed."""
        return f"{self._rng.getrandbits(48):012x}"

    def add_container(
        self, role: str, shards: list[list[int]] | None = None, hostname: str | None = None
    ) -> Container:
        """Append a container (churn in tests, construction in `Simulator.add_instance`)."""
        kind = "coreapp" if role == "coreapp" else "master"
        index = sum(1 for c in self.containers if (c.role == "coreapp") == (kind == "coreapp"))
        container = Container(
            hostname=hostname or f"{self.name}-{kind}{index}",
            container_id=self.new_container_id(),
            role=role,
            shards=shards if shards is not None else [],
        )
        self.containers.append(container)
        return container

    def take_token(self, now: float) -> bool:
        """Token-bucket rate limit (the documented 20 req/s, bursts to 60); False means 429."""
        elapsed = max(0.0, now - self._bucket_time)
        self._bucket_time = now
        self._tokens = min(float(self._burst), self._tokens + elapsed * self._rate)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _traits_of(self, container: Container) -> _Traits:
        traits = self._traits.get(container.container_id)
        if traits is None:
            rng = random.Random(f"{self._seed}:{self.name}:{container.container_id}")
            traits = _Traits(
                data_base=rng.randrange(45 * _GB, 55 * _GB),
                data_drain=rng.randrange(20_000, 120_000),
                logs_base=rng.randrange(8 * _GB, 12 * _GB),
                logs_drain=rng.randrange(5_000, 40_000),
                flap_period=rng.randrange(180, 420),
                flap_phase=rng.randrange(0, 420),
                registration_id=rng.randrange(1, 2**31),
            )
            self._traits[container.container_id] = traits
        return traits

    def _socket_conn(self, container: Container, traits: _Traits, now: int) -> str:
        if self.socket_conn is not None:
            return self.socket_conn
        if container.role != "coreapp":
            return "UP"
        position = (now + traits.flap_phase) % traits.flap_period
        if position < 2:
            return "DN"
        if position < 4:
            return "SC"
        if position < 6:
            return "UP receiving offline"
        return "UP"

    def _fields(self, container: Container, now: int) -> dict[str, Any]:
        traits = self._traits_of(container)
        elapsed = max(0, now - int(self.started))
        data_span = traits.data_base - _GB
        logs_span = traits.logs_base - _GB
        built = datetime.fromtimestamp(self.expires_at - 180 * 86400, UTC)
        fields: dict[str, Any] = {
            "context": "healthcheck",
            "db_engine": "MYSQL",
            "db_info": ["mysql-connector 8.0"],
            "debug_info": self._phone if self.registered else "unregistered",
            "description": (
                f"WhatsApp Business API Client {self.version} "
                f"(built {built.strftime('%Y-%m-%d %H:%M:%S')} UTC)"
            ),
            "device_iso8601": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "e2e": {
                "identity_timestamp": datetime.fromtimestamp(
                    self.started - 86400 * 30, UTC
                ).strftime("%Y-%m-%dT%H:%M:%S"),
                "registration_id": traits.registration_id,
            },
            "env": [
                "WA_DB_ENGINE=MYSQL",
                "WA_DB_HOSTNAME=mysql",
                "WA_DB_PORT=3306",
                "WA_DB_USERNAME=root",
                f"WA_DB_PASSWORD={FAKE_DB_PASSWORD}",
                f"WA_API_KEY={self._env_api_key}",
                "WA_WEB_SERVERNAME=localhost",
            ],
            "expire_timestamp": datetime.fromtimestamp(self.expires_at, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S"
            ),
            "free_space_data": traits.data_base - (elapsed * traits.data_drain) % data_span,
            "free_space_logs": traits.logs_base - (elapsed * traits.logs_drain) % logs_span,
            "free_space_media_incoming": UNLIMITED_FREE_SPACE,
            "free_space_media_outgoing": UNLIMITED_FREE_SPACE,
            "lc": "en",
            "lg": "US",
            "multi_connect": self.multi_connect,
            "os_name": "ubuntu-x86_64",
            "os_version": "20.04",
            "schema": {
                "axolotl": 1,
                "callback": 2,
                "cluster": 3,
                "config": 4,
                "contact": 5,
                "jobqueue": 6,
                "message": 7,
            },
            "socket_conn": self._socket_conn(container, traits, now),
            "version": self.version,
        }
        if self.topology != "single":
            fields["role"] = container.role
            fields["shards"] = [list(pair) for pair in container.shards]
        return fields

    def support_payload(self, now: float) -> dict[str, Any]:
        """The `{"support": {...}}` document at wall time `now` (flat for a single instance)."""
        if self.payload is not None:
            return {"support": self.payload}
        second = int(now)
        if self.topology == "single":
            if not self.containers:
                return {"support": {}}
            return {"support": self._fields(self.containers[0], second)}
        return {"support": {c.key: self._fields(c, second) for c in self.containers}}

    def support_body(self, now: float) -> bytes:
        """Serialized support document, cached per whole second so polling bursts stay cheap."""
        if self.payload is not None:
            return orjson.dumps({"support": self.payload})
        key = (
            int(now),
            self.registered,
            self.expires_at,
            self.version,
            self.socket_conn,
            self.topology,
            self.started,
            tuple((c.hostname, c.container_id, c.role, str(c.shards)) for c in self.containers),
        )
        if key != self._cache_key:
            self._cache_body = orjson.dumps(self.support_payload(now))
            self._cache_key = key
        return self._cache_body

    def health_payload(self) -> dict[str, Any]:
        """The `/v1/health` document: only shard-owning Coreapps are connected, as in HA."""
        if self.topology == "single":
            status = "connected" if self.registered else "unregistered"
            return {"health": {"gateway_status": status}}
        return {
            "health": {
                c.key: {
                    "gateway_status": "connected"
                    if c.role == "coreapp" and c.shards
                    else "disconnected",
                    "role": c.role,
                }
                for c in self.containers
            }
        }


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
    ) -> None:
        self.api_key = api_key
        self.username = username
        self.password = password
        self.token_lifetime = token_lifetime
        self.rate = rate
        self.burst = burst
        self.now: Callable[[], float] = clock
        self.seed = seed
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
    ) -> Instance:
        """Create a deployment; the first one added is also served at the root path."""
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, not {topology!r}")
        if name in self._instances:
            raise ValueError(f"instance {name!r} already exists")
        if not name or "/" in name:
            raise ValueError(f"invalid instance name {name!r}")
        inst = Instance(
            name,
            topology,
            seed=self.seed,
            started=self.now(),
            rate=self.rate,
            burst=self.burst,
            api_key=self.api_key,
        )
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
                owned = [[-1, -1]] if i == 0 and topology == "multiconnect" else []
                inst.add_container(role, owned)
            for i in range(coreapps):
                if topology == "ha":
                    owned = [[-1, -1], [0, 0]] if i == 0 else []
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
            ("POST", "/v1/users/login", self._login),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/{name}" + path, handler)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        """Release hanging handlers so the server can stop without waiting its timeout."""
        self._closing = True

    def _meta(self, inst: Instance | None) -> dict[str, str]:
        return {"api_status": "stable", "version": inst.version if inst else DEFAULT_VERSION}

    def _error(
        self,
        inst: Instance | None,
        status: int,
        code: int,
        title: str,
        details: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        body = {
            "errors": [{"code": code, "title": title, "details": details}],
            "meta": self._meta(inst),
        }
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

    async def _faults(self, request: web.Request, inst: Instance) -> web.StreamResponse | None:
        """Apply the instance's faults; a response means the request ends here."""
        faults = inst.faults
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

    def _authorized(self, request: web.Request, *, allow_api_key: bool) -> bool:
        """Apikey (when configured and allowed) or an unexpired Bearer token."""
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        scheme = scheme.lower()
        credential = credential.strip()
        if scheme == "apikey":
            return (
                allow_api_key
                and self.api_key is not None
                and hmac.compare_digest(credential.encode(), self.api_key.encode())
            )
        if scheme == "bearer":
            expiry = self.tokens.get(credential)
            if expiry is None:
                return False
            if expiry <= self.now():
                del self.tokens[credential]
                return False
            return True
        return False

    async def _guard(self, request: web.Request, endpoint: str) -> Instance | web.StreamResponse:
        """Common preamble: resolve, count, faults, rate limit, auth (in that order).

        Returns the instance to answer for, or the response that ends the request.
        """
        inst = self._resolve(request)
        if inst is None:
            return self._error(None, 404, 1006, "Resource not found", "Unknown instance")
        inst.requests[endpoint] += 1
        early = await self._faults(request, inst)
        if early is not None:
            return early
        if not inst.take_token(self.now()):
            inst.requests["rejected"] += 1
            return self._error(inst, 429, 1015, "Too many requests", "Rate limit hit")
        if endpoint == "login":
            return inst
        allow_api_key = not (endpoint == "support" and inst.faults.reject_api_key)
        if not self._authorized(request, allow_api_key=allow_api_key):
            return self._error(inst, 401, 1005, "Access denied", "Invalid credentials")
        return inst

    async def _support(self, request: web.Request) -> web.StreamResponse:
        inst = await self._guard(request, "support")
        if not isinstance(inst, Instance):
            return inst
        return web.Response(body=inst.support_body(self.now()), content_type=_JSON)

    async def _health(self, request: web.Request) -> web.StreamResponse:
        inst = await self._guard(request, "health")
        if not isinstance(inst, Instance):
            return inst
        return web.Response(body=orjson.dumps(inst.health_payload()), content_type=_JSON)

    async def _shards(self, request: web.Request) -> web.StreamResponse:
        inst = await self._guard(request, "shards")
        if not isinstance(inst, Instance):
            return inst
        body = {"account": {"shards": inst.shard_count}}
        return web.Response(body=orjson.dumps(body), content_type=_JSON)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        inst = await self._guard(request, "login")
        if not isinstance(inst, Instance):
            return inst
        if not self._check_basic(request.headers.get("Authorization", "")):
            return self._error(inst, 401, 1005, "Access denied", "Invalid credentials")
        token = secrets.token_urlsafe(32)
        expiry = self.now() + self.token_lifetime
        self.tokens[token] = expiry
        self.tokens_issued += 1
        expires_after = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")
        body = {
            "users": [{"token": token, "expires_after": expires_after}],
            "meta": self._meta(inst),
        }
        return web.Response(body=orjson.dumps(body), content_type=_JSON)

    def _check_basic(self, header: str) -> bool:
        """Basic credentials match; logins are disabled when no password is configured."""
        if self.password is None:
            return False
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        return bool(sep) and hmac.compare_digest(
            f"{user}:{password}".encode(), f"{self.username}:{self.password}".encode()
        )


# --------------------------------------------------------------------- command line


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m exporter.simulator`."""
    parser = argparse.ArgumentParser(
        prog="whatsapp-api-simulator",
        description="Fake WhatsApp Business API On-Premises clients for demos and tests.",
    )
    parser.add_argument(
        "--listen",
        type=_parse_listen,
        default=("127.0.0.1", 9090),
        help="HOST:PORT to serve on (default 127.0.0.1:9090)",
    )
    parser.add_argument("--single", type=int, default=0, help="single instances (single-N)")
    parser.add_argument("--ha", type=int, default=0, help="HA clusters (ha-N)")
    parser.add_argument("--multiconnect", type=int, default=0, help="multiconnect clusters (mc-N)")
    parser.add_argument("--masters", type=int, default=2, help="masters per cluster")
    parser.add_argument("--coreapps", type=int, default=2, help="coreapps per cluster")
    parser.add_argument("--shards", type=int, default=1, help="shards per multiconnect cluster")
    parser.add_argument("--api-key", default=None, help="accept this Apikey")
    parser.add_argument("--username", default="admin", help="login user name")
    parser.add_argument("--password", default=None, help="login password (logins off if unset)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s per instance")
    parser.add_argument("--burst", type=int, default=60, help="burst per instance")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated values")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Serve simulated deployments and print their target URLs on one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    sim = Simulator(
        api_key=args.api_key,
        username=args.username,
        password=args.password,
        rate=args.rate,
        burst=args.burst,
        seed=args.seed,
    )
    if args.single + args.ha + args.multiconnect == 0:
        args.single = 1
    try:
        for i in range(args.single):
            sim.add_instance(f"single-{i}")
        for i in range(args.ha):
            sim.add_instance(f"ha-{i}", "ha", masters=args.masters, coreapps=args.coreapps)
        for i in range(args.multiconnect):
            sim.add_instance(
                f"mc-{i}",
                "multiconnect",
                masters=args.masters,
                coreapps=args.coreapps,
                shards=args.shards,
            )
    except ValueError as exc:
        parser.error(str(exc))
    host, port = args.listen
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    base = f"http://{shown}:{port}"
    print(",".join(f"{name}={sim.url(base, name)}" for name in sim.instances), flush=True)
    web.run_app(sim.app(), host=host, port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
