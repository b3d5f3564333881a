"""A fake WhatsApp Business API On-Premises client, for the demo, the tests and the benchmarks.

It serves the endpoints the exporter talks to (`/v1/support`, `/v1/health`, `/v1/users/login`,
`/v1/account/shards`) for many simulated deployments at once, with the authentication, rate
limit, error envelopes and response shapes described in `docs/upstream-api.md`.
Values move with the clock (free space drains, `socket_conn` flaps) so a dashboard demo looks
alive, yet everything is derived from `clock()` and `seed`, so tests are deterministic.

Besides the healthy picture it can show failovers (`Instance.fail_over_master`,
`Instance.kill_coreapp`, or both on a schedule), broken clusters (`Instance.break_cluster`),
faults per endpoint (`Instance.faults_for`) and any body verbatim (`Faults.body`); the tests'
hostile bodies and raw TCP answers live with the tests. `docs/simulator.md` has the tour.

Run it alone with `python -m whatsapp_api_simulator --single 2 --multiconnect 1`.
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
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from whatsapp_api_simulator.cloud import (
    GraphSimulator,
    add_graph_arguments,
    describe,
    graph_from_args,
)

__all__ = [
    "BROKEN_PICTURES",
    "DEFAULT_PORT",
    "DEFAULT_VERSION",
    "ENDPOINTS",
    "GATEWAY_STATUSES",
    "OLD_VERSION",
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
ENDPOINTS = ("support", "health", "shards", "login")
GATEWAY_STATUSES = ("connected", "connecting", "disconnected", "uninitialized", "unregistered")
BROKEN_PICTURES = ("unowned_shard", "two_primaries", "mixed_builds", "owner_disconnected")
DEFAULT_VERSION = "v2.53.2"
OLD_VERSION = "v2.51.1"  # what `break_cluster("mixed_builds")` gives one container
DEFAULT_PORT = 10043  # not 9090: that is Prometheus' own port
# What every container's `env` lists besides its API key and the variables given to `Simulator`.
_ENV = (
    "WA_DB_ENGINE=MYSQL",
    "WA_DB_HOSTNAME=mysql",
    "WA_DB_PORT=3306",
    "WA_DB_USERNAME=root",
    "WA_WEB_SERVERNAME=localhost",
)
# What a filesystem without practical limit reports (documented value, about 2**63).
UNLIMITED_FREE_SPACE = 9223372036853727000
_GB = 1_000_000_000
_CHUNK = 64 * 1024
_PADDING_CHUNK = b" " * _CHUNK
_STREAM_PREFIX = b'{"support": {"padding": "'
_HANG_POLL = 0.05
_JSON = "application/json"
_CONTROL = [-1, -1]


@dataclass
class Faults:
    """Switches a test flips to make an instance (or one endpoint of it) misbehave. All off.

    Applied in this order: `latency`, `hang`, `status` (+ `retry_after`), `missing`, `body`,
    `body_size` (all before the rate limit and authentication), then the answer is shaped by
    `login_token`, `new_free_space_keys`, `drip` and `set_cookie`.
    """

    latency: float = 0.0
    hang: bool = False
    status: int | None = None
    retry_after: str | None = None
    body: bytes | None = None
    body_size: int | None = None
    reject_api_key: bool = False
    missing: bool = False  # 404 "Resource not found": an older build without the endpoint
    drip: float = 0.0  # seconds between single bytes of the answer's body
    set_cookie: bool = False  # a fresh `Set-Cookie` on every answer, errors included
    login_token: str | None = None  # the token the login hands out, verbatim (e.g. with CR/LF)
    new_free_space_keys: int = 0  # this many never-seen `free_space_<random>` keys per answer


@dataclass
class Container:
    """One container of a deployment; tests mutate the list of them to simulate churn.

    `version` (a different build than the instance's) and `gateway_status` (what `/v1/health`
    says for it) override the instance-wide values when set.
    """

    hostname: str
    container_id: str
    role: str
    shards: list[list[int]] = field(default_factory=list)
    version: str | None = None
    gateway_status: str | None = None

    @property
    def key(self) -> str:
        """The `<hostname>:<container-id>` key used by HA/multiconnect responses."""
        return f"{self.hostname}:{self.container_id}"

    def owns(self, shard: int) -> bool:
        """Whether one of its inclusive `[first, last]` pairs covers `shard`."""
        return any(first <= shard <= last for first, last in self.shards)


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
        env: Mapping[str, str],
    ) -> None:
        self.name = name
        self.topology = topology
        self.faults = Faults()
        # Faults of one endpoint only, on top of `faults`; see `faults_for`.
        self.endpoint_faults: dict[str, Faults] = {}
        self.payload: dict[str, Any] | None = None
        # Requests by endpoint ("support", "health", "shards", "login"), plus "rejected" (429).
        self.requests: collections.Counter[str] = collections.Counter()
        self.cookies_received = 0  # requests that sent a Cookie header back
        self.containers: list[Container] = []
        # Attributes tests may set.
        self.registered = True
        self.started = started
        self.expires_at = started + 20 * 86400
        self.version = DEFAULT_VERSION
        self.socket_conn: str | None = None
        self.shard_count = 1
        self.shards_as_list = False  # `{"account": [{"shards": N}]}` instead of an object
        self.api_status: str | None = "stable"  # `meta.api_status`; None: answers carry no meta
        # Credentials of this deployment; None: the simulator's. See `Simulator.add_instance`.
        self.api_key: str | None = None
        self.username: str | None = None
        self.password: str | None = None
        self.tokens: dict[str, float] | None = None  # own token store when it has own credentials
        self._seed = seed
        self._rng = random.Random(f"{seed}:{name}")
        self._phone = f"+1555010{self._rng.randrange(10_000):04d}"
        # The `env` variables beyond the usual ones (a real client lists its secrets there).
        self.env = dict(env)
        self._traits: dict[str, _Traits] = {}
        self._cache_key: tuple[Any, ...] | None = None
        self._cache_body = b""
        self._failover_period: float | None = None
        self._next_failover = 0.0
        self._failovers = 0
        # Token bucket: refilled lazily from the clock at each request.
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._bucket_time = started

    @property
    def multi_connect(self) -> bool:
        """Whether responses say `multi_connect: true` (only for the multiconnect topology)."""
        return self.topology == "multiconnect"

    def faults_for(self, endpoint: str) -> Faults:
        """The faults of one endpoint ("support", "health", "shards", "login"), created on use."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
        faults = self.endpoint_faults.get(endpoint)
        if faults is None:
            faults = self.endpoint_faults[endpoint] = Faults()
        return faults

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

    def container(self, which: Container | str) -> Container:
        """A container given itself, its `host:id` key or its hostname (KeyError if unknown)."""
        for c in self.containers:
            if c is which or c.key == which or c.hostname == which:
                return c
        raise KeyError(which)

    def take_token(self, now: float) -> bool:
        """Token-bucket rate limit (the documented 20 req/s, bursts to 60); False means 429."""
        elapsed = max(0.0, now - self._bucket_time)
        self._bucket_time = now
        self._tokens = min(float(self._burst), self._tokens + elapsed * self._rate)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    # ------------------------------------------------------------- failovers and broken pictures

    def _clustered(self, what: str) -> None:
        if self.topology == "single":
            raise ValueError(f"{what} needs an HA or multiconnect instance, {self.name} is single")

    def fail_over_master(self, to: Container | str | None = None) -> Container:
        """The primary master loses its lease: a secondary (`to`, else the first) takes over.

        Every former primary becomes a secondary; in multiconnect the control shard moves with
        the role. Returns the new primary master.
        """
        self._clustered("a master failover")
        new = self.container(to) if to is not None else None
        if new is None:
            new = next((c for c in self.containers if c.role == "secondary_master"), None)
        if new is None or new.role != "secondary_master":
            raise ValueError(f"{self.name} has no secondary master to fail over to")
        for c in self.containers:
            if c.role == "primary_master":
                c.role = "secondary_master"
                c.shards = [pair for pair in c.shards if pair != _CONTROL]
        new.role = "primary_master"
        if self.multi_connect:
            new.shards = [_CONTROL, *(pair for pair in new.shards if pair != _CONTROL)]
        return new

    def kill_coreapp(
        self, which: Container | str | None = None, *, respawn: bool = False
    ) -> Container | None:
        """A Coreapp (`which`, else the first owning a shard) disappears from the responses.

        Its shards move to a spare Coreapp (one owning none) or, with no spare, stay unowned.
        `respawn` brings a fresh Coreapp up on the same host (a new container id), as a
        restarted container would come back, and the primary master gives it the shards left
        unowned (`reassign_orphans`). Returns the Coreapp that took the shards, or None.
        """
        self._clustered("killing a Coreapp")
        if which is not None:
            victim = self.container(which)
        else:
            coreapps = [c for c in self.containers if c.role == "coreapp"]
            owners = [c for c in coreapps if c.shards]
            if not coreapps:
                raise ValueError(f"{self.name} has no Coreapp left")
            victim = (owners or coreapps)[0]
        if victim.role != "coreapp":
            raise ValueError(f"{self.name}: {which!r} is not a Coreapp")
        self.containers.remove(victim)
        spare = next((c for c in self.containers if c.role == "coreapp" and not c.shards), None)
        heir = spare if spare is not None and victim.shards else None
        if heir is not None:
            heir.shards = victim.shards
        if respawn:
            self.add_container("coreapp", hostname=victim.hostname)
            heirs = self.reassign_orphans()
            heir = heir or (heirs[0] if heirs else None)
        return heir

    def reassign_orphans(self) -> list[Container]:
        """The primary master hands every shard no container owns to a spare Coreapp.

        As a real cluster heals: in multiconnect each unowned shard 0 .. N-1 goes to a Coreapp
        owning none (and the control shard to the primary master); in HA shards -1 and 0 go
        together to one. Without a primary master or a spare they stay unowned. Returns the
        Coreapps that took shards.
        """
        self._clustered("reassigning shards")
        primary = next((c for c in self.containers if c.role == "primary_master"), None)
        if primary is None:
            return []

        def unowned(shard: int) -> bool:
            return not any(c.owns(shard) for c in self.containers)

        if self.multi_connect:
            if unowned(-1):
                primary.shards = [list(_CONTROL), *primary.shards]
            wanted = [[[i, i]] for i in range(self.shard_count) if unowned(i)]
        else:
            wanted = [[list(_CONTROL), [0, 0]]] if unowned(0) else []
        spares = [c for c in self.containers if c.role == "coreapp" and not c.shards]
        for spare, shards in zip(spares, wanted, strict=False):
            spare.shards = shards
        return spares[: len(wanted)]

    def schedule_failovers(self, period: float, start: float | None = None) -> None:
        """Every `period` seconds of the simulator's clock, alternate a master failover and
        the kill (with respawn) of a shard-owning Coreapp, drawn from the seed.

        Events happen lazily when the instance is asked (`tick`), so a fake clock drives them.
        """
        self._clustered("scheduled failovers")
        if period <= 0:
            raise ValueError(f"the failover period must be positive, not {period}")
        self._failover_period = period
        self._next_failover = (self.started if start is None else start) + period

    def tick(self, now: float) -> None:
        """Apply the scheduled failovers due by `now` (the server calls it on every request)."""
        period = self._failover_period
        if period is None or now < self._next_failover:
            return
        due = int((now - self._next_failover) // period) + 1
        self._next_failover += due * period
        for _ in range(min(due, 2 * len(self.containers) + 2)):  # a clock jump: no long loop
            rng = random.Random(f"{self._seed}:{self.name}:failover:{self._failovers}")
            if self._failovers % 2 == 0 and any(
                c.role == "secondary_master" for c in self.containers
            ):
                self.fail_over_master()
            else:
                owners = [c for c in self.containers if c.role == "coreapp" and c.shards]
                if owners:
                    self.kill_coreapp(rng.choice(owners), respawn=True)
            self._failovers += 1

    def break_cluster(self, kind: str) -> Container:
        """Put the cluster into one of `BROKEN_PICTURES`; returns the container made wrong.

        - `unowned_shard`: the owner of the highest shard drops it (nobody owns it);
        - `two_primaries`: a secondary master also says `primary_master` (one is added if none);
        - `mixed_builds`: the last container runs `OLD_VERSION`;
        - `owner_disconnected`: a shard-owning Coreapp's gateway says `disconnected`.
        """
        self._clustered("a broken cluster")
        owners = [c for c in self.containers if c.role == "coreapp" and c.shards]
        if kind == "unowned_shard":
            if not owners:
                raise ValueError(f"{self.name} has no shard owner left")
            top = max(owners, key=lambda c: max(last for _, last in c.shards))
            top.shards = []
            return top
        if kind == "two_primaries":
            second = next((c for c in self.containers if c.role == "secondary_master"), None)
            if second is None:
                second = self.add_container("secondary_master")
            second.role = "primary_master"
            return second
        if kind == "mixed_builds":
            self.containers[-1].version = OLD_VERSION
            return self.containers[-1]
        if kind == "owner_disconnected":
            if not owners:
                raise ValueError(f"{self.name} has no shard owner left")
            owners[0].gateway_status = "disconnected"
            return owners[0]
        raise ValueError(f"kind must be one of {BROKEN_PICTURES}, not {kind!r}")

    # ------------------------------------------------------------- documents

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
        version = container.version or self.version
        fields: dict[str, Any] = {
            "context": "healthcheck",
            "db_engine": "MYSQL",
            "db_info": ["mysql-connector 8.0"],
            "debug_info": self._phone if self.registered else "unregistered",
            "description": (
                f"WhatsApp Business API Client {version} "
                f"(built {built.strftime('%Y-%m-%d %H:%M:%S')} UTC)"
            ),
            "device_iso8601": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "e2e": {
                "identity_timestamp": datetime.fromtimestamp(
                    self.started - 86400 * 30, UTC
                ).strftime("%Y-%m-%dT%H:%M:%S"),
                "registration_id": traits.registration_id,
            },
            "env": [*_ENV, *(f"{name}={value}" for name, value in self.env.items())],
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
            "version": version,
        }
        if self.topology != "single":
            fields["role"] = container.role
            fields["shards"] = [list(pair) for pair in container.shards]
        return fields

    def meta(self) -> dict[str, str] | None:
        """The `meta` object every answer carries (None when `api_status` is None)."""
        if self.api_status is None:
            return None
        return {"api_status": self.api_status, "version": self.version}

    def _with_meta(self, document: dict[str, Any]) -> dict[str, Any]:
        meta = self.meta()
        if meta is not None:
            document["meta"] = meta
        return document

    def support_payload(self, now: float) -> dict[str, Any]:
        """The `{"support": {...}, "meta": {...}}` document at wall time `now` (flat for single)."""
        if self.payload is not None:
            return self._with_meta({"support": self.payload})
        second = int(now)
        if self.topology == "single":
            support = self._fields(self.containers[0], second) if self.containers else {}
        else:
            support = {c.key: self._fields(c, second) for c in self.containers}
        return self._with_meta({"support": support})

    def support_body(self, now: float) -> bytes:
        """Serialized support document, cached per whole second so polling bursts stay cheap."""
        if self.payload is not None:
            return orjson.dumps(self.support_payload(now))
        key = (
            int(now),
            self.registered,
            self.expires_at,
            self.version,
            self.socket_conn,
            self.topology,
            self.started,
            self.api_status,
            tuple(self.env.items()),
            tuple(
                (c.hostname, c.container_id, c.role, str(c.shards), c.version)
                for c in self.containers
            ),
        )
        if key != self._cache_key:
            self._cache_body = orjson.dumps(self.support_payload(now))
            self._cache_key = key
        return self._cache_body

    def _support_with_new_keys(self, now: float, count: int) -> bytes:
        """The support document with `count` never-seen `free_space_*` keys per container."""
        document = self.support_payload(now)
        support = document["support"]
        entries = [support] if self.topology == "single" or self.payload else support.values()
        for entry in entries:
            if isinstance(entry, dict):
                for _ in range(count):
                    entry[f"free_space_{self._rng.getrandbits(40):010x}"] = self._rng.randrange(_GB)
        return orjson.dumps(document)

    def gateway_status(self, container: Container) -> str:
        """What `/v1/health` says for a container, following Meta's description of HA/MC."""
        if container.gateway_status is not None:
            return container.gateway_status
        if not self.registered:
            return "unregistered"
        if self.topology == "single":
            return "connected"
        if self.topology == "ha":
            connected = container.role == "coreapp" and container.owns(0)
        else:
            connected = container.role == "primary_master" or (
                container.role == "coreapp" and any(last >= 0 for _, last in container.shards)
            )
        return "connected" if connected else "disconnected"

    def health_payload(self) -> dict[str, Any]:
        """The `/v1/health` document: in HA only the owner of shard 0 is connected; in
        multiconnect the primary master and every shard-owning Coreapp are."""
        if self.topology == "single":
            status = self.gateway_status(self.containers[0]) if self.containers else "connected"
            return self._with_meta({"health": {"gateway_status": status}})
        health = {
            c.key: {"gateway_status": self.gateway_status(c), "role": c.role}
            for c in self.containers
        }
        return self._with_meta({"health": health})

    def shards_payload(self) -> dict[str, Any]:
        """The `/v1/account/shards` document: the configured shard count."""
        account: Any = {"shards": self.shard_count}
        return self._with_meta({"account": [account] if self.shards_as_list else account})


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
                owned = [list(_CONTROL)] if i == 0 and topology == "multiconnect" else []
                inst.add_container(role, owned)
            for i in range(coreapps):
                if topology == "ha":
                    owned = [list(_CONTROL), [0, 0]] if i == 0 else []
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
            inst._with_meta(body)
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
                return inst._support_with_new_keys(now, extra)
            return inst.support_body(now)
        if endpoint == "health":
            return orjson.dumps(inst.health_payload())
        return orjson.dumps(inst.shards_payload())

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
        body = inst._with_meta({"users": [{"token": token, "expires_after": expires_after}]})
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


# --------------------------------------------------------------------- command line


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m whatsapp_api_simulator`."""
    parser = argparse.ArgumentParser(
        prog="whatsapp-api-simulator",
        description="Fake WhatsApp Business API On-Premises clients for demos and tests.",
    )
    parser.add_argument(
        "--listen",
        type=_parse_listen,
        default=("127.0.0.1", DEFAULT_PORT),
        help=f"HOST:PORT to serve on (default 127.0.0.1:{DEFAULT_PORT}; port 0: any free one)",
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
    parser.add_argument(
        "--failover-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="fail over a master or kill a Coreapp of every cluster this often (0: never)",
    )
    add_graph_arguments(parser)
    return parser


def _build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Simulator:
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
        if args.failover_every:
            for inst in sim.instances.values():
                if inst.topology != "single":
                    inst.schedule_failovers(args.failover_every)
    except ValueError as exc:
        parser.error(str(exc))
    return sim


async def _run(sim: Simulator, host: str, port: int, graph: GraphSimulator | None = None) -> int:
    """Bind, print the targets (with the port actually bound), serve until SIGTERM/SIGINT.

    With `graph`, the simulated Graph API shares the port and three more lines tell the
    exporter's `WA_CLOUD_*` settings."""
    app = sim.app()
    if graph is not None:
        graph.install(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = exc.strerror or str(exc)
        print(f"whatsapp-api-simulator: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
        return 1
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    base = f"http://{shown}:{bound}"
    print(",".join(f"{name}={sim.url(base, name)}" for name in sim.instances), flush=True)
    if graph is not None:
        print(describe(graph, base), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> None:
    """Serve simulated deployments and print their target URLs on one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    sim = _build(args, parser)
    host, port = args.listen
    code = asyncio.run(_run(sim, host, port, graph_from_args(args)))
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
