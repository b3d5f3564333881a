"""The ``/v1/support`` payload as typed containers.

Every field is optional ("the fields in the response may vary based on your installation"), and
one field of the wrong type must not cost the operator the rest: such a field is dropped and
named in ``Support.invalid_fields``. Only a document that is not a support document at all
(not JSON, no ``support`` object) is an error, :class:`InvalidResponse`.

What is kept is what gets exported. The phone number in ``debug_info`` is reduced to
``registered`` on the way in, and ``env`` (which may hold secrets) is never read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError

# An ``[[first, last], ...]`` list naming more shards than this is not a real cluster
# (multiconnect tops out at 32 shards) and would only cost memory.
MAX_SHARDS = 1024

FREE_SPACE_PREFIX = "free_space_"
# Bodies larger than this are decoded with a bound on their objects when a series limit is set.
BOUNDED_DECODE_BYTES = 256 * 1024


class InvalidResponse(Exception):
    """The body is not a usable support document; the poll fails with ``invalid_response``."""


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 with or without offset (none means UTC), ``T`` or space separated, or ``Z``."""
    if not isinstance(value, str):
        raise ValueError("not a timestamp string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        # "0001-01-01T00:00+01:00" parses but has no UTC time: refuse it here, not at render
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None
    return parsed


def _shard_ids(value: Any) -> frozenset[int]:
    """``[[-1, -1], [0, 0]]`` -> {-1, 0}; each pair is an inclusive range."""
    if not isinstance(value, list):
        raise ValueError("shards is not a list")
    owned: set[int] = set()
    for pair in value:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(type(v) is int for v in pair)
            or pair[0] > pair[1]
        ):
            raise ValueError("a shard range is not [first, last]")
        if pair[1] - pair[0] + len(owned) >= MAX_SHARDS:
            raise ValueError("too many shards")
        owned.update(range(pair[0], pair[1] + 1))
    return frozenset(owned)


def _free_space(value: Any) -> Any:
    # bool is an int in Python, never a byte count
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError("not a byte count")
    return float(value)


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
ShardIds = Annotated[frozenset[int], BeforeValidator(_shard_ids)]
Bytes = Annotated[float, BeforeValidator(_free_space)]


class ContainerFields(BaseModel):
    """One container's fields: the whole single-instance response, or one cluster entry."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    db_engine: str | None = None
    description: str | None = None
    version: str | None = None
    device_iso8601: Timestamp | None = None
    expire_timestamp: Timestamp | None = None
    free_space: dict[str, Bytes] = Field(default_factory=dict)
    lc: str | None = None
    lg: str | None = None
    multi_connect: StrictBool | None = None
    os_name: str | None = None
    os_version: str | None = None
    schema_: dict[str, int] | None = Field(None, alias="schema")
    socket_conn: str | None = None
    role: str | None = None
    shards: ShardIds | None = None
    registered: bool | None = None


# Documented fields we never read: they only tell a support document from a cluster's keys.
# ``env`` may hold secrets; ``debug_info`` holds the phone number and is reduced to ``registered``.
_UNREAD_KEYS = frozenset({"context", "db_info", "e2e", "env"})
# The model's fields under the upstream's names (derived, so a new field is never dropped unseen).
_MODEL_KEYS = frozenset(
    (info.alias or name) for name, info in ContainerFields.model_fields.items()
) - {
    "free_space",
    "registered",
}
_KNOWN_KEYS = _MODEL_KEYS | _UNREAD_KEYS | {"debug_info"}
# The ``field`` label of a dropped ``free_space_<x>``: one value, whatever <x> the upstream sends.
FREE_SPACE_FIELD = "free_space"
# A cluster entry that is not an object, or whose key repeats another's host and container id.
CONTAINER_FIELD = "container"
# Series one container can give beyond its free_space, schema and shard entries (an upper bound:
# state sets, one undocumented state each, the info and single-value families, the health state).
SERIES_PER_CONTAINER = 40


@dataclass(frozen=True)
class Container:
    """One container of an answer: where it runs (host and container_id, None for a single
    instance) and its fields; the simulator's Container is the same thing on the other side."""

    host: str | None
    container_id: str | None
    fields: ContainerFields


@dataclass(frozen=True)
class Support:
    """A parsed response: its containers and the upstream fields dropped for a wrong type."""

    containers: tuple[Container, ...]
    clustered: bool
    invalid_fields: tuple[str, ...] = field(default=())
    api_status: str | None = None  # meta.api_status of the answer: stable, experimental, deprecated


def load_json(body: bytes, max_objects: int | None = None) -> Any:
    """Decode a body; a number too large for a double (``1e400``) becomes infinity, not a failure.

    orjson refuses such numbers outright, which would cost every field of the answer for one we
    may not even read; the standard parser reads them as ``inf``, and a field we export then
    fails its own validation (every value we export must be finite).

    With ``max_objects``, a large body is decoded by a parser that stops at that many objects:
    a few MiB of tiny containers would otherwise cost twenty times their size as Python objects
    before the series limit could refuse them.
    """
    if max_objects is not None and len(body) > BOUNDED_DECODE_BYTES:
        return _load_bounded(body, max_objects)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        first_error = str(err).split(":")[0]
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidResponse(f"body is not JSON ({first_error})") from None


class _TooManyObjects(Exception):
    pass


def _load_bounded(body: bytes, max_objects: int) -> Any:
    count = 0

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal count
        count += 1
        if count > max_objects:
            raise _TooManyObjects
        return dict(items)

    try:
        return json.loads(body, object_pairs_hook=pairs)
    except _TooManyObjects:
        raise InvalidResponse(
            f"the answer holds more than {max_objects} objects, more than the series limit"
            " allows (--poll.max-series)"
        ) from None
    except (ValueError, RecursionError):
        raise InvalidResponse("body is not JSON") from None


def _meta_status(document: dict[str, Any]) -> str | None:
    meta = document.get("meta")
    status = meta.get("api_status") if isinstance(meta, dict) else None
    return status if isinstance(status, str) and status else None


def parse_support(body: bytes, *, max_series: int | None = None) -> Support:
    """Parse a response body; raise InvalidResponse when it is not a support document.

    With ``max_series``, an answer that could export more series than that is refused before
    any container is validated: its cost is bounded by the limit, not by what the upstream sent.
    """
    document = load_json(body, max_series)
    if not isinstance(document, dict) or not isinstance(document.get("support"), dict):
        raise InvalidResponse("no support object in the response")
    support: dict[str, Any] = document["support"]
    api_status = _meta_status(document)
    invalid: list[str] = []
    clustered = _is_clustered(support)
    entries = list(support.values()) if clustered else [support]
    if max_series is not None:
        estimate = _series_bound(entries)
        if estimate > max_series:
            raise InvalidResponse(
                f"the answer would export up to {estimate} series, more than the limit of"
                f" {max_series} (--poll.max-series)"
            )
    if not clustered:
        container = Container(None, None, _container(support, invalid))
        return Support((container,), False, tuple(invalid), api_status)
    containers = []
    seen: set[tuple[str, str]] = set()
    for key, entry in support.items():
        host, container_id = split_container_key(key)
        if not isinstance(entry, dict) or (host, container_id) in seen:
            invalid.append(CONTAINER_FIELD)
            continue
        seen.add((host, container_id))
        containers.append(Container(host, container_id, _container(entry, invalid)))
    return Support(tuple(containers), True, tuple(invalid), api_status)


def split_container_key(key: str) -> tuple[str, str]:
    """``"host:container-id"`` split at the last colon; a key without one is all host."""
    host, _, container_id = key.rpartition(":")
    if not host:
        return key, ""
    return host, container_id


def _series_bound(entries: list[Any]) -> int:
    """An upper bound of the series the entries can export, computed without expanding them."""
    total = 0
    for entry in entries:
        total += SERIES_PER_CONTAINER
        if not isinstance(entry, dict):
            continue
        total += len(entry)
        schema = entry.get("schema")
        if isinstance(schema, dict):
            total += len(schema)
        shards = entry.get("shards")
        if isinstance(shards, list):
            for pair in shards:
                if isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair):
                    total += max(pair[1] - pair[0] + 1, 0)
    return total


@dataclass(frozen=True)
class Gateway:
    """One container's ``gateway_status`` from ``/v1/health``."""

    host: str | None
    container_id: str | None
    status: str


@dataclass(frozen=True)
class Health:
    """A parsed ``/v1/health`` answer."""

    gateways: tuple[Gateway, ...]


def parse_health(body: bytes, *, max_series: int | None = None) -> Health:
    """``{"health": {"gateway_status": ...}}``, or keyed by ``host:container-id`` in a cluster."""
    document = load_json(body)
    health = document.get("health") if isinstance(document, dict) else None
    if not isinstance(health, dict):
        raise InvalidResponse("no health object in the response")
    if isinstance(health.get("gateway_status"), str):
        return Health((Gateway(None, None, health["gateway_status"]),))
    if max_series is not None and len(health) * SERIES_PER_CONTAINER > max_series:
        raise InvalidResponse(f"health lists {len(health)} containers, too many")
    gateways = []
    seen: set[tuple[str, str]] = set()
    for key, entry in health.items():
        host, container_id = split_container_key(key)
        status = entry.get("gateway_status") if isinstance(entry, dict) else None
        if isinstance(status, str) and status and (host, container_id) not in seen:
            seen.add((host, container_id))
            gateways.append(Gateway(host, container_id, status))
    if not gateways:
        raise InvalidResponse("no gateway_status in the health response")
    return Health(tuple(gateways))


def parse_shard_count(body: bytes) -> int:
    """``{"account": {"shards": N}}`` (or a list of such objects): the configured shard count."""
    document = load_json(body)
    account = document.get("account") if isinstance(document, dict) else None
    if isinstance(account, list):
        account = account[0] if account else None
    count = account.get("shards") if isinstance(account, dict) else None
    if type(count) is not int or not 1 <= count <= MAX_SHARDS:
        raise InvalidResponse("no shard count in the account response")
    return count


def _is_clustered(support: dict[str, Any]) -> bool:
    """HA/multiconnect responses are keyed by ``host:container-id`` instead of field names."""
    if any(key in _KNOWN_KEYS or key.startswith(FREE_SPACE_PREFIX) for key in support):
        return False
    return any(":" in key and isinstance(value, dict) for key, value in support.items())


def _container(raw: dict[str, Any], invalid: list[str]) -> ContainerFields:
    """Validate one container, dropping (and naming) each field of the wrong type."""
    data: dict[str, Any] = {}
    free_space: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(FREE_SPACE_PREFIX) and len(key) > len(FREE_SPACE_PREFIX):
            free_space[key.removeprefix(FREE_SPACE_PREFIX)] = value
        elif key == "debug_info":
            if isinstance(value, str):
                data["registered"] = value.strip().lower() != "unregistered"
            else:
                invalid.append(key)
        elif key in _MODEL_KEYS:
            data[key] = value
    if free_space:
        data["free_space"] = free_space
    for _ in range(len(data) + 1):
        try:
            return ContainerFields.model_validate(data)
        except ValidationError as err:
            for error in err.errors(include_input=False, include_url=False):
                loc = error["loc"]
                if loc and loc[0] == "free_space" and len(loc) > 1:
                    free_space.pop(str(loc[1]), None)
                    invalid.append(FREE_SPACE_FIELD)
                elif loc:
                    data.pop(str(loc[0]), None)
                    invalid.append(str(loc[0]))
    raise InvalidResponse("container fields could not be validated")  # pragma: no cover


def utc_seconds(moment: datetime) -> float:
    """A timezone-aware datetime (``parse_timestamp`` makes every one aware) as Unix seconds."""
    return moment.timestamp()
