"""A simulated On-Premises deployment: its containers, who owns which shard, how it fails over.

One `Instance` is a single instance, an HA cluster or a multiconnect cluster; its `Container`s
own shards, and the cluster events (`fail_over_master`, `kill_coreapp`, `reassign_orphans`, a
schedule of them, `break_cluster`) change who owns what the way a real cluster does. What it
answers on the wire is drawn in `onprem_documents.py`; `onprem.py` serves it. Everything that
moves derives from the clock handed in and the seed, so tests are deterministic.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from whatsapp_api_simulator import onprem_documents as documents

__all__ = [
    "BROKEN_PICTURES",
    "CONTROL_SHARD",
    "DEFAULT_VERSION",
    "ENDPOINTS",
    "GATEWAY_STATUSES",
    "OLD_VERSION",
    "TOPOLOGIES",
    "VALID_SHARD_COUNTS",
    "Container",
    "Faults",
    "Instance",
]

TOPOLOGIES = ("single", "ha", "multiconnect")
VALID_SHARD_COUNTS = (1, 2, 4, 8, 16, 32)
ENDPOINTS = ("support", "health", "shards", "login")
GATEWAY_STATUSES = ("connected", "connecting", "disconnected", "uninitialized", "unregistered")
BROKEN_PICTURES = ("unowned_shard", "two_primaries", "mixed_builds", "owner_disconnected")
DEFAULT_VERSION = "v2.53.2"
OLD_VERSION = "v2.51.1"  # what `break_cluster("mixed_builds")` gives one container
CONTROL_SHARD = [-1, -1]  # the `[first, last]` pair of the control shard (copy before storing)


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
        self.seed = seed
        # Draws the phone number, then container ids and `new_free_space_keys`, in that order.
        self.rng = random.Random(f"{seed}:{name}")
        self.phone = f"+1555010{self.rng.randrange(10_000):04d}"  # `debug_info` while registered
        # The `env` variables beyond the usual ones (a real client lists its secrets there).
        self.env = dict(env)
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
        return f"{self.rng.getrandbits(48):012x}"

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
                c.shards = [pair for pair in c.shards if pair != CONTROL_SHARD]
        new.role = "primary_master"
        if self.multi_connect:
            new.shards = [CONTROL_SHARD, *(pair for pair in new.shards if pair != CONTROL_SHARD)]
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
                primary.shards = [list(CONTROL_SHARD), *primary.shards]
            wanted = [[[i, i]] for i in range(self.shard_count) if unowned(i)]
        else:
            wanted = [[list(CONTROL_SHARD), [0, 0]]] if unowned(0) else []
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
            rng = random.Random(f"{self.seed}:{self.name}:failover:{self._failovers}")
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

    # ------------------------------------------------------------- what it answers

    def meta(self) -> dict[str, str] | None:
        """The `meta` object every answer carries (None when `api_status` is None)."""
        return documents.meta(self)

    def support_payload(self, now: float) -> dict[str, Any]:
        """The `{"support": {...}, "meta": {...}}` document at wall time `now` (flat for single)."""
        return documents.support_payload(self, now)

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

    def gateway_status(self, container: Container) -> str:
        """What `/v1/health` says for a container, following Meta's description of HA/MC."""
        return documents.gateway_status(self, container)

    def health_payload(self) -> dict[str, Any]:
        """The `/v1/health` document: in HA only the owner of shard 0 is connected; in
        multiconnect the primary master and every shard-owning Coreapp are."""
        return documents.health_payload(self)

    def shards_payload(self) -> dict[str, Any]:
        """The `/v1/account/shards` document: the configured shard count."""
        return documents.shards_payload(self)
