"""What a simulated On-Premises deployment answers: its support, health and shards documents.

Response shapes follow `docs/upstream-api.md`. Values move with the clock (free space drains,
`socket_conn` flaps) but derive only from it, the seed and the deployment's knobs, so a fake
clock makes them deterministic. `onprem_model.Instance` offers these as methods.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from whatsapp_api_simulator.onprem_model import Container, Instance

__all__ = [
    "UNLIMITED_FREE_SPACE",
    "gateway_status",
    "health_payload",
    "meta",
    "shards_payload",
    "support_payload",
    "support_with_new_keys",
    "with_meta",
]

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


@functools.lru_cache(maxsize=1 << 16)
def _traits(seed: int, name: str, container_id: str) -> _Traits:
    """A container's constants; a pure function of its ids, so a bounded cache is enough."""
    rng = random.Random(f"{seed}:{name}:{container_id}")
    return _Traits(
        data_base=rng.randrange(45 * _GB, 55 * _GB),
        data_drain=rng.randrange(20_000, 120_000),
        logs_base=rng.randrange(8 * _GB, 12 * _GB),
        logs_drain=rng.randrange(5_000, 40_000),
        flap_period=rng.randrange(180, 420),
        flap_phase=rng.randrange(0, 420),
        registration_id=rng.randrange(1, 2**31),
    )


def _socket_conn(inst: Instance, container: Container, traits: _Traits, now: int) -> str:
    if inst.socket_conn is not None:
        return inst.socket_conn
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


def _fields(inst: Instance, container: Container, now: int) -> dict[str, Any]:
    traits = _traits(inst.seed, inst.name, container.container_id)
    elapsed = max(0, now - int(inst.started))
    data_span = traits.data_base - _GB
    logs_span = traits.logs_base - _GB
    built = datetime.fromtimestamp(inst.expires_at - 180 * 86400, UTC)
    version = container.version or inst.version
    fields: dict[str, Any] = {
        "context": "healthcheck",
        "db_engine": "MYSQL",
        "db_info": ["mysql-connector 8.0"],
        "debug_info": inst.phone if inst.registered else "unregistered",
        "description": (
            f"WhatsApp Business API Client {version} "
            f"(built {built.strftime('%Y-%m-%d %H:%M:%S')} UTC)"
        ),
        "device_iso8601": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "e2e": {
            "identity_timestamp": datetime.fromtimestamp(inst.started - 86400 * 30, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S"
            ),
            "registration_id": traits.registration_id,
        },
        "env": [*_ENV, *(f"{name}={value}" for name, value in inst.env.items())],
        "expire_timestamp": datetime.fromtimestamp(inst.expires_at, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        ),
        "free_space_data": traits.data_base - (elapsed * traits.data_drain) % data_span,
        "free_space_logs": traits.logs_base - (elapsed * traits.logs_drain) % logs_span,
        "free_space_media_incoming": UNLIMITED_FREE_SPACE,
        "free_space_media_outgoing": UNLIMITED_FREE_SPACE,
        "lc": "en",
        "lg": "US",
        "multi_connect": inst.multi_connect,
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
        "socket_conn": _socket_conn(inst, container, traits, now),
        "version": version,
    }
    if inst.topology != "single":
        fields["role"] = container.role
        fields["shards"] = [list(pair) for pair in container.shards]
    return fields


def meta(inst: Instance) -> dict[str, str] | None:
    """The `meta` object every answer carries (None when `api_status` is None)."""
    if inst.api_status is None:
        return None
    return {"api_status": inst.api_status, "version": inst.version}


def with_meta(inst: Instance, document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the deployment's `meta` added, as on every answer, errors included."""
    found = meta(inst)
    if found is not None:
        document["meta"] = found
    return document


def support_payload(inst: Instance, now: float) -> dict[str, Any]:
    """The `{"support": {...}, "meta": {...}}` document at wall time `now` (flat for single)."""
    if inst.payload is not None:
        return with_meta(inst, {"support": inst.payload})
    second = int(now)
    if inst.topology == "single":
        support = _fields(inst, inst.containers[0], second) if inst.containers else {}
    else:
        support = {c.key: _fields(inst, c, second) for c in inst.containers}
    return with_meta(inst, {"support": support})


def support_with_new_keys(inst: Instance, now: float, count: int) -> bytes:
    """The support document with `count` never-seen `free_space_*` keys per container."""
    document = support_payload(inst, now)
    support = document["support"]
    entries = [support] if inst.topology == "single" or inst.payload else support.values()
    for entry in entries:
        if isinstance(entry, dict):
            for _ in range(count):
                entry[f"free_space_{inst.rng.getrandbits(40):010x}"] = inst.rng.randrange(_GB)
    return orjson.dumps(document)


def gateway_status(inst: Instance, container: Container) -> str:
    """What `/v1/health` says for a container, following Meta's description of HA/MC."""
    if container.gateway_status is not None:
        return container.gateway_status
    if not inst.registered:
        return "unregistered"
    if inst.topology == "single":
        return "connected"
    if inst.topology == "ha":
        connected = container.role == "coreapp" and container.owns(0)
    else:
        connected = container.role == "primary_master" or (
            container.role == "coreapp" and any(last >= 0 for _, last in container.shards)
        )
    return "connected" if connected else "disconnected"


def health_payload(inst: Instance) -> dict[str, Any]:
    """The `/v1/health` document: in HA only the owner of shard 0 is connected; in
    multiconnect the primary master and every shard-owning Coreapp are."""
    if inst.topology == "single":
        status = gateway_status(inst, inst.containers[0]) if inst.containers else "connected"
        return with_meta(inst, {"health": {"gateway_status": status}})
    health = {
        c.key: {"gateway_status": gateway_status(inst, c), "role": c.role} for c in inst.containers
    }
    return with_meta(inst, {"health": health})


def shards_payload(inst: Instance) -> dict[str, Any]:
    """The `/v1/account/shards` document: the configured shard count."""
    account: Any = {"shards": inst.shard_count}
    return with_meta(inst, {"account": [account] if inst.shards_as_list else account})
