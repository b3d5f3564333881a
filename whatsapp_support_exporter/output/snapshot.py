"""What is known about one target or account at one moment: immutable, replaced whole.

The poller makes a new snapshot with :func:`dataclasses.replace` after every poll and hands it
to the store; whoever holds an old one keeps a consistent picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from whatsapp_support_exporter.upstream.cloud.model import PhoneNumber, Usage, Waba
from whatsapp_support_exporter.upstream.errors import Reason
from whatsapp_support_exporter.upstream.onprem.support import Health, Support

_EMPTY: Mapping[str, int] = MappingProxyType({})


def bumped(counts: Mapping[str, int], key: str, by: int = 1) -> Mapping[str, int]:
    """A copy of ``counts`` with ``key`` increased: counters stay immutable in a snapshot."""
    new = dict(counts)
    new[key] = new.get(key, 0) + by
    return MappingProxyType(new)


@dataclass(frozen=True)
class EndpointState:
    """The last outcome of an optional endpoint (``health``, ``shards``) and its failures."""

    success: bool = False
    errors: Mapping[str, int] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class TargetSnapshot:
    """One target: the last good data (None once stale), the last poll, and the counters."""

    name: str
    url: str
    labels: tuple[tuple[str, str], ...] = ()  # exported on whatsapp_target_info
    with_logins: bool = False  # a login is configured: the logins counter is exported
    up: bool = False
    support: Support | None = None
    health: Health | None = None  # gateway status per container, from /v1/health
    shards_configured: int | None = None  # from /v1/account/shards
    received_at: float | None = None  # wall time the last good answer arrived
    last_success: float | None = None
    last_duration: float | None = None
    last_error: Reason | None = None
    last_error_detail: str = ""
    polls: int = 0
    errors: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    logins: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    invalid_fields: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    endpoints: Mapping[str, EndpointState] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """up, down or starting: what the landing page and ``check`` show."""
        if self.up:
            return "up"
        return "starting" if self.polls == 0 else "down"


@dataclass(frozen=True)
class AccountSnapshot:
    """One Cloud API account: its last good data (None once stale), its last poll, counters."""

    name: str
    waba_id: str
    up: bool = False
    waba: Waba | None = None
    numbers: tuple[PhoneNumber, ...] | None = None
    usage: Usage | None = None  # from the last X-Business-Use-Case-Usage header
    last_success: float | None = None
    last_duration: float | None = None
    last_error: Reason | None = None
    last_error_detail: str = ""
    polls: int = 0
    errors: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    invalid_fields: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    @property
    def state(self) -> str:
        """up, down or starting: what the landing page and ``check`` show."""
        if self.up:
            return "up"
        return "starting" if self.polls == 0 else "down"
