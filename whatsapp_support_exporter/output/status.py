"""What an operator looks at first: one row per target and container, with a state word.

Shared by ``check`` (a table on the terminal) and the landing page (an HTML table), so the two
never disagree on what "failing" means. A row's state is one word of :data:`STATES`, worst first:

- ``down``: the last poll failed (or ``check``'s one attempt did);
- ``critical``: it answered, but the client cannot work or soon will not (what the critical
  alerts fire on: build expired or expiring within 3 days, socket or gateway not connected on a
  container that must be, every container unregistered);
- ``warning``: it works, but act soon (build expiring within 14 days, less than 2 GiB free in a
  directory, an optional endpoint failing);
- ``starting``: not polled yet;
- ``up``: nothing to do.

The thresholds are the alert rules' (``deploy/prometheus/alerts.yml``). A second kind of row
(Cloud API accounts) is a second :class:`Kind` with its own columns and the same states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from whatsapp_support_exporter.output.snapshot import AccountSnapshot, TargetSnapshot
from whatsapp_support_exporter.upstream.cloud.model import PhoneNumber, Usage, Waba
from whatsapp_support_exporter.upstream.onprem.support import (
    Container,
    ContainerFields,
    Health,
    Support,
    utc_seconds,
)

State = Literal["down", "critical", "warning", "starting", "up"]
STATES: tuple[State, ...] = ("down", "critical", "warning", "starting", "up")  # worst first

DAY = 86400.0
EXPIRY_CRITICAL_DAYS = 3  # WhatsAppBuildExpiresVerySoon
EXPIRY_WARNING_DAYS = 14  # WhatsAppBuildExpiresSoon
LOW_FREE_BYTES = 2 * 1024**3  # WhatsAppFreeSpaceLow
CONTROL_SHARD = -1


@dataclass(frozen=True)
class Kind:
    """A kind of row: its table's title, what names a row and a part of it, and its columns."""

    title: str
    name: str  # "target"
    part: str  # "container": a row per part of it
    columns: tuple[str, ...]  # after name, part and state

    @property
    def header(self) -> tuple[str, ...]:
        return (self.name, self.part, "state", *self.columns)


TARGETS = Kind(
    "Targets",
    "target",
    "container",
    ("expires in", "socket", "least free", "role", "gateway", "notes"),
)


@dataclass(frozen=True)
class Row:
    """One line: who, which part of it, its state and the kind's columns (all text)."""

    name: str
    part: str
    state: State
    cells: tuple[str, ...]

    @property
    def line(self) -> tuple[str, ...]:
        return (self.name, self.part, self.state, *self.cells)


def worse(a: State, b: State) -> State:
    return a if STATES.index(a) <= STATES.index(b) else b


def worst_first(rows: Sequence[Row]) -> list[Row]:
    """Rows of the worst names first (a name's rows stay together), then by name; within a
    name its worst parts first, otherwise in the upstream's order."""
    worst: dict[str, State] = {}
    for row in rows:
        worst[row.name] = worse(worst.get(row.name, "up"), row.state)
    order = sorted(
        enumerate(rows),
        key=lambda item: (
            STATES.index(worst[item[1].name]),
            item[1].name,
            STATES.index(item[1].state),
            item[0],
        ),
    )
    return [row for _, row in order]


def byte_size(value: float) -> str:
    """``1.5 GiB``; the upstream's "no limit" sentinel as ``unlimited``."""
    if value >= 9e18:
        return "unlimited"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""  # pragma: no cover


def not_answered(name: str, state: State, error: str) -> Row:
    """The one row of a target that is down or not polled yet."""
    return Row(name, "", state, ("",) * (len(TARGETS.columns) - 1) + (error,))


def target_rows(
    name: str,
    support: Support,
    health: Health | None,
    failed_endpoints: Iterable[str],
    now: float,
) -> list[Row]:
    """The rows of a target that answered: one per container.

    ``failed_endpoints`` says which optional endpoint failed (``health failed: timeout``).
    """
    gateways = {(g.host, g.container_id): g.status for g in health.gateways} if health else {}
    target_notes = list(failed_endpoints)
    registered = [c.fields.registered for c in support.containers]
    unregistered = bool(registered) and all(r is False for r in registered)
    out = []
    for data in support.containers:
        gateway = gateways.get((data.host, data.container_id))
        state, notes = _judge(data.fields, gateway, now)
        if unregistered:
            state, notes = worse(state, "critical"), [*notes, "number not registered"]
        if target_notes:
            state, notes = worse(state, "warning"), [*notes, *target_notes]
        out.append(Row(name, _part(data), state, _cells(data.fields, gateway, now, notes)))
    return out


def snapshot_rows(snap: TargetSnapshot, now: float) -> list[Row]:
    """The landing page's rows of one target, from what the poller last saw."""
    if snap.polls == 0:
        return [not_answered(snap.name, "starting", "")]
    if not snap.up or snap.support is None:
        error = f"{snap.last_error}: {snap.last_error_detail}" if snap.last_error else "no data"
        return [not_answered(snap.name, "down", error)]
    failed = [f"{name} failed" for name, state in snap.endpoints.items() if not state.success]
    return target_rows(snap.name, snap.support, snap.health, failed, now)


def _part(data: Container) -> str:
    return f"{data.host}:{data.container_id}" if data.host is not None else ""


def _days(c: ContainerFields, now: float) -> float | None:
    if c.expire_timestamp is None:
        return None
    return (utc_seconds(c.expire_timestamp) - now) / DAY


def _cells(
    c: ContainerFields, gateway: str | None, now: float, notes: list[str]
) -> tuple[str, ...]:
    days = _days(c, now)
    least = byte_size(min(c.free_space.values())) if c.free_space else ""
    return (
        "" if days is None else f"{days:.1f} days",
        c.socket_conn or "",
        least,
        c.role or "",
        gateway or "",
        "; ".join(notes),
    )


def _judge(c: ContainerFields, gateway: str | None, now: float) -> tuple[State, list[str]]:
    """A container's state and why, as the alert rules would see it."""
    state: State = "up"
    notes: list[str] = []

    def flag(level: State, note: str) -> None:
        nonlocal state
        state = worse(state, level)
        notes.append(note)

    days = _days(c, now)
    if days is not None:
        if days <= 0:
            flag("critical", "build expired")
        elif days < EXPIRY_CRITICAL_DAYS:
            flag("critical", f"build expires within {EXPIRY_CRITICAL_DAYS} days")
        elif days < EXPIRY_WARNING_DAYS:
            flag("warning", f"build expires within {EXPIRY_WARNING_DAYS} days")
    owned = c.shards or frozenset()
    # single instances and shard owners must be connected; HA spares and idle Masters need not
    if gateway is not None and gateway != "connected" and (c.role is None or owned):
        flag("critical", f"gateway {gateway}")
    elif (
        gateway is None
        and c.socket_conn not in (None, "UP")
        and (c.role is None or owned - {CONTROL_SHARD})
    ):
        flag("critical", f"socket {c.socket_conn}")
    low = sorted(d for d, free in c.free_space.items() if free < LOW_FREE_BYTES)
    if low:
        flag("warning", "under 2 GiB free: " + ", ".join(low))
    return state, notes


# -- Cloud API accounts -----------------------------------------------------------------------

ACCOUNTS = Kind(
    "Cloud API accounts",
    "account",
    "waba id",
    ("numbers", "worst quality", "notes"),
)
# Quality ratings, worst first; a value not listed ranks between YELLOW and GREEN.
_QUALITY_ORDER = ("RED", "YELLOW", "UNKNOWN", "NA", "GREEN")
USAGE_WARNING = 0.9  # the usage from which the exporter also waits longer between polls


def _quality_rank(quality: str) -> int:
    return _QUALITY_ORDER.index(quality) if quality in _QUALITY_ORDER else 2


def account_not_answered(name: str, waba_id: str, state: State, error: str) -> Row:
    """The one row of an account that is down or not polled yet."""
    return Row(name, waba_id, state, ("", "", error))


def account_row(
    name: str,
    waba_id: str,
    waba: Waba | None,
    numbers: Sequence[PhoneNumber],
    usage: Usage | None,
) -> Row:
    """The row of an account that answered: its numbers, the worst quality and what to act on.

    critical: the account or a number BLOCKED, a quality rating RED, a number not CONNECTED or
    still on ON_PREMISE (as the alerts page for them); warning: LIMITED, YELLOW, usage of the rate
    limit at 90 %. A number DELETED on purpose is counted apart, as the alerts leave it out.
    """
    state: State = "up"
    notes: list[str] = []

    def flag(level: State, note: str) -> None:
        nonlocal state
        state = worse(state, level)
        notes.append(note)

    can_send = waba.can_send_message if waba is not None else None
    if can_send == "BLOCKED":
        flag("critical", "account BLOCKED")
    elif can_send == "LIMITED":
        flag("warning", "account LIMITED")
    counted: tuple[tuple[State, str, Callable[[PhoneNumber], bool]], ...] = (
        ("critical", "BLOCKED", lambda n: n.can_send_message == "BLOCKED"),
        ("critical", "RED", lambda n: n.quality_rating == "RED"),
        ("critical", "not CONNECTED", lambda n: n.status not in (None, "CONNECTED")),
        ("warning", "LIMITED", lambda n: n.can_send_message == "LIMITED"),
        ("warning", "YELLOW", lambda n: n.quality_rating == "YELLOW"),
        ("critical", "on ON_PREMISE", lambda n: n.platform == "ON_PREMISE"),
    )
    live = [n for n in numbers if n.status != "DELETED"]
    for level, what, test in counted:
        hits = sum(1 for n in live if test(n))
        if hits:
            flag(level, f"{hits} number{'s' if hits != 1 else ''} {what}")
    deleted = len(numbers) - len(live)
    if deleted:
        notes.append(f"{deleted} number{'s' if deleted != 1 else ''} DELETED")
    if usage is not None and usage.highest >= USAGE_WARNING:
        flag("warning", f"rate limit {usage.highest:.0%} used")
    qualities = [n.quality_rating for n in live if n.quality_rating is not None]
    worst = min(qualities, key=_quality_rank) if qualities else ""
    return Row(name, waba_id, state, (str(len(numbers)), worst, "; ".join(notes)))


def account_snapshot_row(snap: AccountSnapshot) -> Row:
    """The landing page's row of one account, from what the poller last saw."""
    if snap.polls == 0:
        return account_not_answered(snap.name, snap.waba_id, "starting", "")
    if not snap.up or snap.numbers is None:
        error = f"{snap.last_error}: {snap.last_error_detail}" if snap.last_error else "no data"
        return account_not_answered(snap.name, snap.waba_id, "down", error)
    return account_row(snap.name, snap.waba_id, snap.waba, snap.numbers, snap.usage)
