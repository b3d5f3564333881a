"""The ``/v1/support`` payload as typed containers.

Every field is optional ("the fields in the response may vary based on your installation"), and
one field of the wrong type must not cost the operator the rest: such a field is dropped and
named in ``Support.invalid_fields``. Only a document that is not a support document at all
(not JSON, no ``support`` object) is an error, :class:`InvalidResponse`.

What is kept is what gets exported. The phone number in ``debug_info`` is reduced to
``registered`` on the way in, and ``env`` (which may hold secrets) is never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError

# An ``[[first, last], ...]`` list naming more shards than this is not a real cluster
# (multiconnect tops out at 32 shards) and would only cost memory.
MAX_SHARDS = 1024

FREE_SPACE_PREFIX = "free_space_"


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
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("not a byte count")
    return float(value)


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
ShardIds = Annotated[frozenset[int], BeforeValidator(_shard_ids)]
Bytes = Annotated[float, BeforeValidator(_free_space)]


class Container(BaseModel):
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


# The upstream's own names, for counting a dropped field under the name the operator knows.
_KNOWN_KEYS = frozenset(
    {
        "context",
        "db_engine",
        "db_info",
        "debug_info",
        "description",
        "device_iso8601",
        "e2e",
        "env",
        "expire_timestamp",
        "lc",
        "lg",
        "multi_connect",
        "os_name",
        "os_version",
        "schema",
        "socket_conn",
        "version",
        "role",
        "shards",
    }
)


@dataclass(frozen=True)
class ContainerData:
    """A container with where it runs; host and container_id are None for a single instance."""

    host: str | None
    container_id: str | None
    fields: Container


@dataclass(frozen=True)
class Support:
    """A parsed response: its containers and the upstream fields dropped for a wrong type."""

    containers: tuple[ContainerData, ...]
    clustered: bool
    invalid_fields: tuple[str, ...] = field(default=())


def parse_support(body: bytes) -> Support:
    """Parse a response body; raise InvalidResponse when it is not a support document."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidResponse(f"body is not JSON ({str(err).split(':')[0]})") from None
    if not isinstance(document, dict) or not isinstance(document.get("support"), dict):
        raise InvalidResponse("no support object in the response")
    support: dict[str, Any] = document["support"]
    invalid: list[str] = []
    if _is_clustered(support):
        containers = []
        for key, entry in support.items():
            if not isinstance(entry, dict):
                invalid.append("container")
                continue
            host, _, container_id = key.rpartition(":")
            if not host:
                host, container_id = key, ""
            containers.append(ContainerData(host, container_id, _container(entry, invalid)))
        return Support(tuple(containers), True, tuple(invalid))
    return Support(
        (ContainerData(None, None, _container(support, invalid)),), False, tuple(invalid)
    )


def _is_clustered(support: dict[str, Any]) -> bool:
    """HA/multiconnect responses are keyed by ``host:container-id`` instead of field names."""
    if any(key in _KNOWN_KEYS or key.startswith(FREE_SPACE_PREFIX) for key in support):
        return False
    return any(":" in key and isinstance(value, dict) for key, value in support.items())


def _container(raw: dict[str, Any], invalid: list[str]) -> Container:
    """Validate one container, dropping (and naming) each field of the wrong type."""
    data: dict[str, Any] = {}
    free_space: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(FREE_SPACE_PREFIX):
            free_space[key.removeprefix(FREE_SPACE_PREFIX)] = value
        elif key == "debug_info":
            if isinstance(value, str):
                data["registered"] = value.strip().lower() != "unregistered"
            else:
                invalid.append(key)
        elif key in _KNOWN_KEYS and key not in ("env", "e2e", "db_info", "context"):
            data[key] = value
    if free_space:
        data["free_space"] = free_space
    for _ in range(len(data) + 1):
        try:
            return Container.model_validate(data)
        except ValidationError as err:
            for error in err.errors(include_input=False, include_url=False):
                loc = error["loc"]
                if loc and loc[0] == "free_space" and len(loc) > 1:
                    free_space.pop(str(loc[1]), None)
                    invalid.append(FREE_SPACE_PREFIX + str(loc[1]))
                elif loc:
                    data.pop(str(loc[0]), None)
                    invalid.append(str(loc[0]))
    raise InvalidResponse("container fields could not be validated")  # pragma: no cover


def utc_seconds(moment: datetime) -> float:
    """A timezone-aware datetime as Unix seconds."""
    return moment.astimezone(UTC).timestamp()
