"""Which replica polls which target: rendezvous hashing of the target name.

Every replica computes the same answer from the name alone (no coordination), every target has
exactly one owner, and going from N to N+1 replicas moves only the targets the new replica wins,
about 1/(N+1) of them. The hash is blake2b: Python's ``hash()`` of a string differs per process.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Protocol, TypeVar


class Named(Protocol):
    """Anything with a name (a Target): sharding needs nothing else, nor imports settings."""

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)

# A StatefulSet Pod is named <statefulset>-<ordinal>.
_ORDINAL = re.compile(r"(?:.+-)?(\d+)")


def parse_shard(value: str | int) -> int:
    """``3`` or ``"3"`` or a StatefulSet Pod name (``"wa-exporter-2"`` -> 2); else ValueError."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    match = _ORDINAL.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            "must be a number or a StatefulSet Pod name ending in its ordinal (wa-exporter-2)"
        )
    return int(match.group(1))


def _weight(shard: int, target_name: str) -> int:
    digest = hashlib.blake2b(f"{shard}\0{target_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(target_name: str, total_shards: int) -> int:
    """The shard (0 .. total_shards-1) that polls this target."""
    if total_shards <= 1:
        return 0
    return max(range(total_shards), key=lambda shard: _weight(shard, target_name))


def assigned(targets: Iterable[T], shard: int, total_shards: int) -> list[T]:
    """The targets this shard polls, in their given order."""
    if total_shards <= 1:
        return list(targets)
    return [t for t in targets if shard_of(t.name, total_shards) == shard]
